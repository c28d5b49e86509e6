/**
 * `npm run bench:scale` (root): the control plane at scale. Real etcd, real
 * daemons, in namespaces made by src/topology (per-run tag, removed however
 * the run ends; every address in 198.18.0.0/15; processes ended by PID).
 *
 * Phases (each a measurement, nothing asserted; exit 0 unless the run fails):
 *  1. programming — for each size (1,000 / 5,000 peer leases written straight
 *     to etcd, one etcd prefix per backend so no daemon sees another
 *     backend's leases) and each backend (udp, vxlan, host-gw), ONE daemon in
 *     its own host namespace: time from spawn to every peer programmed (the
 *     kernel's proto-0x52 route count for vxlan/host-gw, polled every 25 ms;
 *     for udp the -v=1 "route set" log lines, written after the data plane's
 *     one-step table swap), VmRSS once programmed, idle CPU (reconcile) per
 *     second, CPU (utime+stime from /proc/PID/stat) for 1,000 lease changes
 *     (500 puts of new leases then their 500 deletes, until the daemon has
 *     caught up).
 *     Unless --no-flannel, each size also runs the real upstream flanneld (host-gw, from
 *     the anchors) on a host of its own, measured the same way and reported
 *     side by side with Rudder's host-gw (programFlannel says how it differs).
 *     Simulated peers: subnets 10.1.0.0/24 upwards of Network 10.0.0.0/8,
 *     PublicIPs 198.19.x.y (on-link on every host's 198.18.0.0/15 underlay:
 *     host-gw routes need no real host behind them), VtepMAC 0e:xx:xx:xx:xx:xx.
 *  2. propagation — W (default 50) host-gw daemons, one per namespace, over a
 *     base of B (default 1,000) leases. 100 new leases are written one at a
 *     time (250 ms apart); `ip -ts monitor route` in every watcher namespace
 *     timestamps the route's arrival. Latency = monitor timestamp − the
 *     wall-clock time just before the etcd put. Reported over all
 *     (lease, watcher) pairs and as "slowest watcher" per lease. For host-gw
 *     the route being in the kernel is the route being usable.
 *  3. etcd load — etcd's own /metrics (grpc_server_started_total and
 *     grpc_server_msg_received_total by method) over a steady-state window
 *     with the W daemons up, and over a mass restart of all W daemons
 *     (SIGTERM all, start all at once, until each has rewritten its subnet file
 *     with its old subnet).
 *  4. mass restart — R (default 200) registry clients acting as daemons
 *     (SubnetManager + LeaseWatcher over EtcdRegistry, each its own etcd
 *     connection, in one process in the etcd namespace) over the base leases:
 *     all acquire, all stop, all start at once; per client the time until it
 *     holds a subnet again and its watcher has listed; whether it is the same
 *     subnet; etcd requests during the restart.
 *
 * etcd is only reachable inside the namespaces, so an agent (this file with
 * --agent, in the etcd namespace) does every etcd operation; the parent talks
 * to it over stdin/stdout, one JSON object per line.
 *
 *   npm run bench:scale                              everything (≈ 10 min)
 *   node dist/bench/scale.js --sizes 1000 --backends host-gw --watchers 10 --restart 50
 *   node dist/bench/scale.js --help
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { svgToPng } from './png';
import { createCluster, dyingWithUs, sleep, type Cluster, type Host } from '../src/topology';
import { flanneldBinary, flanneldUnavailable } from '../src/topology/anchors';
import { Flanneld } from '../src/topology/flanneld';
import { EtcdClient, type TxnOp } from '../src/etcd/client';

// ---------------------------------------------------------------------------
// Arguments

interface Args {
  sizes: number[];
  backends: string[];
  watchers: number;
  base: number;
  propLeases: number;
  restart: number;
  churn: number;
  rounds: number;
  phases: Set<string>;
  json: string | null;
  write: boolean;
  label: string;
  /** Another launcher (A/B of node flags); default bin/rudder. */
  rudderBin: string | null;
  /** Also run the real flanneld (host-gw) in the programming phase, beside Rudder (issue 17); on unless --no-flannel. */
  flannel: boolean;
}

const ALL_PHASES = ['program', 'prop', 'restart'];

function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    sizes: [1000, 5000],
    backends: ['udp', 'vxlan', 'host-gw'],
    watchers: 50,
    base: 1000,
    propLeases: 100,
    restart: 200,
    churn: 1000,
    rounds: 1,
    phases: new Set(ALL_PHASES),
    json: null,
    write: true,
    label: '',
    rudderBin: null,
    flannel: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1] ?? '';
    const num = (): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${k}=${v}: expected a number`);
      i++;
      return n;
    };
    if (k === '--sizes') {
      a.sizes = v.split(',').map(Number);
      i++;
    } else if (k === '--backends') {
      a.backends = v.split(',');
      i++;
    } else if (k === '--phases') {
      a.phases = new Set(v.split(','));
      i++;
    } else if (k === '--watchers') a.watchers = num();
    else if (k === '--base') a.base = num();
    else if (k === '--prop-leases') a.propLeases = num();
    else if (k === '--restart') a.restart = num();
    else if (k === '--churn') a.churn = num();
    else if (k === '--rounds') a.rounds = Math.max(1, num());
    else if (k === '--json') {
      a.json = v;
      i++;
    } else if (k === '--label') {
      a.label = v;
      i++;
    } else if (k === '--no-write') a.write = false;
    else if (k === '--flannel') a.flannel = true;
    else if (k === '--no-flannel') a.flannel = false;
    else if (k === '--rudder-bin') {
      a.rudderBin = path.resolve(v);
      i++;
    } else if (k === '--help' || k === '-h') {
      process.stdout.write(
        'usage: node dist/bench/scale.js [--sizes 1000,5000] [--backends udp,vxlan,host-gw] [--phases program,prop,restart]\n' +
          '       [--watchers 50] [--base 1000] [--prop-leases 100] [--restart 200] [--churn 1000] [--rounds 1]\n' +
          '       [--json FILE] [--label TEXT] [--no-write] [--rudder-bin PATH] [--no-flannel]\n' +
          'The programming phase also runs the real flanneld (host-gw, from the anchors) beside Rudder; --no-flannel skips it.\n' +
          'Writes bench/results/scale.md, bench/results/scale.json, docs/scale.svg and docs/scale.png unless --no-write.\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

// ---------------------------------------------------------------------------
// Simulated leases (shared by parent and agent)

const NETWORK_CONFIG = (backend: string): object => ({
  Network: '10.0.0.0/8',
  SubnetLen: 24,
  // Real daemons take 10.0.x.0/24; simulated peers use 10.1.0.0 and up.
  SubnetMin: '10.0.0.0',
  SubnetMax: '10.0.255.0',
  Backend: { Type: backend },
});

/** Simulated peer i: subnet 10.(1 + i/256).(i%256).0/24, PublicIP 198.19.0.0 + i + 1, VtepMAC from i. */
function simLease(i: number, backend: string): { key: string; subnet: string; value: string } {
  const s = `10.${1 + (i >> 8)}.${i & 255}.0`;
  const ipn = (198 << 24) + (19 << 16) + i + 1;
  const pub = [ipn >>> 24, (ipn >>> 16) & 255, (ipn >>> 8) & 255, ipn & 255].join('.');
  const mac = ['0e', '00', '00', ((i + 1) >> 16) & 255, ((i + 1) >> 8) & 255, (i + 1) & 255].map((x) => (typeof x === 'string' ? x : x.toString(16).padStart(2, '0'))).join(':');
  const value = JSON.stringify({ PublicIP: pub, BackendType: backend, BackendData: backend === 'vxlan' ? { VtepMAC: mac } : {} });
  return { key: `subnets/${s}-24`, subnet: `${s}/24`, value };
}

// Index ranges of the simulated leases (all below 10.255 / 198.19.255.255).
const CHURN_FROM = 20_000;
const PROP_FROM = 40_000;

// ---------------------------------------------------------------------------
// Agent (runs in the etcd namespace)

type Req = { id: number; op: string; [k: string]: unknown };

async function agent(endpoint: string): Promise<void> {
  const client = new EtcdClient({ endpoints: [endpoint], timeoutMs: 30_000 });
  const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');
  let shared: string | null = null; // one etcd lease for every simulated key of a run
  const leaseId = async (): Promise<string> => {
    shared ??= await client.leaseGrant(7200);
    return shared;
  };
  const putMany = async (prefix: string, from: number, n: number, backend: string): Promise<void> => {
    const lease = await leaseId();
    for (let i = 0; i < n; i += 100) {
      const ops: TxnOp[] = [];
      for (let j = i; j < Math.min(n, i + 100); j++) {
        const l = simLease(from + j, backend);
        ops.push({ put: { key: `${prefix}/${l.key}`, value: l.value, lease } });
      }
      await client.txn({ compare: [], success: ops });
    }
  };
  const ops: Record<string, (r: Req) => Promise<unknown>> = {
    async populate(r) {
      const prefix = String(r.prefix);
      await client.put(`${prefix}/config`, JSON.stringify(r.config));
      await putMany(prefix, Number(r.from ?? 0), Number(r.n), String(r.backend));
      return { ok: true };
    },
    async clear(r) {
      await client.deleteRange(String(r.prefix) + '/', { prefix: true });
      return { ok: true };
    },
    async count(r) {
      return { n: (await client.range(`${String(r.prefix)}/subnets/`, { prefix: true, countOnly: true })).count };
    },
    async churn(r) {
      const prefix = String(r.prefix);
      const n = Number(r.n);
      const lease = await leaseId();
      const t0 = Date.now();
      const half = Math.floor(n / 2);
      for (let j = 0; j < half; j++) {
        const l = simLease(CHURN_FROM + j, String(r.backend));
        await client.put(`${prefix}/${l.key}`, l.value, { lease });
      }
      const tPuts = Date.now();
      for (let j = 0; j < n - half; j++) await client.deleteRange(`${prefix}/${simLease(CHURN_FROM + j, String(r.backend)).key}`);
      return { ms: Date.now() - t0, putsMs: tPuts - t0, puts: half, deletes: n - half };
    },
    async propWrite(r) {
      const prefix = String(r.prefix);
      const lease = await leaseId();
      const writes: Array<{ subnet: string; t: number; ackMs: number }> = [];
      for (let j = 0; j < Number(r.count); j++) {
        const l = simLease(PROP_FROM + j, String(r.backend));
        const t = Date.now();
        await client.put(`${prefix}/${l.key}`, l.value, { lease });
        writes.push({ subnet: l.subnet, t, ackMs: Date.now() - t });
        await sleep(Number(r.gapMs));
      }
      return { writes };
    },
    async metrics() {
      const res = await fetch(`${endpoint}/metrics`);
      return { t: Date.now(), counters: parseEtcdMetrics(await res.text()) };
    },
    async restart(r) {
      return restartClients(endpoint, String(r.prefix), Number(r.n));
    },
  };
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    let req: Req;
    try {
      req = JSON.parse(line) as Req;
    } catch {
      continue;
    }
    const fn = ops[req.op];
    if (!fn) {
      out({ id: req.id, error: `unknown op ${req.op}` });
      continue;
    }
    fn(req).then(
      (result) => out({ id: req.id, result }),
      (e: unknown) => out({ id: req.id, error: e instanceof Error ? e.stack ?? e.message : String(e) }),
    );
  }
  client.close();
}

/** Counters of etcd's /metrics that show what clients ask: gRPC calls and stream messages by method. */
function parseEtcdMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(grpc_server_started_total|grpc_server_msg_received_total)\{([^}]*)\} ([0-9.e+]+)$/.exec(line);
    if (m) {
      const method = /grpc_method="([^"]+)"/.exec(m[2] as string)?.[1] ?? '?';
      const k = `${m[1] === 'grpc_server_started_total' ? 'calls' : 'msgs'}:${method}`;
      out[k] = (out[k] ?? 0) + Number(m[3]);
      continue;
    }
    const s = /^(etcd_server_proposals_committed_total|etcd_mvcc_range_total|etcd_mvcc_put_total|etcd_mvcc_txn_total|etcd_network_client_grpc_sent_bytes_total|etcd_network_client_grpc_received_bytes_total) ([0-9.e+]+)$/.exec(line);
    if (s) out[s[1] as string] = Number(s[2]);
  }
  return out;
}

/**
 * R registry clients acting as daemons: acquire (SubnetManager), keep, watch
 * (LeaseWatcher). Then all stop and all start again at once (a mass
 * restart). Per client: ms until the subnet is held again and until the
 * watcher has listed; same subnet or not.
 */
async function restartClients(endpoint: string, prefix: string, n: number): Promise<object> {
  const { EtcdRegistry } = await import('../src/subnet/etcd-registry');
  const { SubnetManager } = await import('../src/subnet/manager');
  const { LeaseWatcher } = await import('../src/subnet/watcher');
  const { parseConfig } = await import('../src/config');
  const { createLogger } = await import('../src/log');
  const { formatCidr } = await import('../src/ip/ipv4');
  let warns = 0;
  const log = createLogger({ write: (l) => void (/ (warn|error) /.test(l) && warns++) });
  const config = parseConfig(JSON.stringify({ Network: '10.0.0.0/8', SubnetLen: 24, SubnetMin: '10.200.0.0', SubnetMax: '10.203.255.0', Backend: { Type: 'host-gw' } }));
  interface Client { stop: () => Promise<void>; subnet: string; acquiredMs: number; listedMs: number }
  const startOne = async (i: number, t0: number): Promise<Client> => {
    const registry = new EtcdRegistry({ endpoints: [endpoint], prefix });
    const publicIP = ((198 << 24) + (19 << 16) + 60_000 + i + 1) >>> 0;
    const manager = new SubnetManager({ registry, config, publicIP, backendType: 'host-gw', backendData: {}, ttlMs: 24 * 3600_000, renewMarginMs: 3600_000, log });
    const ac = new AbortController();
    // Like the daemon: retry acquisition through etcd trouble with the manager's jittered backoff.
    const { backoffMs } = await import('../src/util/backoff');
    let lease;
    for (let f = 1; ; f++) {
      try {
        lease = await manager.acquire(null);
        break;
      } catch {
        await sleep(backoffMs(f));
      }
    }
    const acquiredMs = Date.now() - t0;
    let listed!: () => void;
    const firstList = new Promise<void>((r) => (listed = r));
    const watcher = new LeaseWatcher(registry, log, async () => listed());
    const watching = watcher.run(ac.signal);
    const keeping = manager.keep(ac.signal).catch(() => undefined);
    await firstList;
    return {
      subnet: formatCidr(lease.subnet),
      acquiredMs,
      listedMs: Date.now() - t0,
      stop: async () => {
        ac.abort();
        await watching;
        await keeping;
        registry.close();
      },
    };
  };
  const metrics = async (): Promise<Record<string, number>> => parseEtcdMetrics(await (await fetch(`${endpoint}/metrics`)).text());
  const t0 = Date.now();
  let clients = await Promise.all(Array.from({ length: n }, (_, i) => startOne(i, t0)));
  const firstMs = Date.now() - t0;
  const before = clients.map((c) => c.subnet);
  await Promise.all(clients.map((c) => c.stop()));
  await sleep(1000);
  const m0 = await metrics();
  const t1 = Date.now();
  clients = await Promise.all(Array.from({ length: n }, (_, i) => startOne(i, t1)));
  const restartMs = Date.now() - t1;
  const m1 = await metrics();
  const same = clients.filter((c, i) => c.subnet === before[i]).length;
  const res = {
    n,
    firstStartMs: firstMs,
    restartMs,
    acquiredMs: clients.map((c) => c.acquiredMs),
    listedMs: clients.map((c) => c.listedMs),
    sameSubnet: same,
    distinctSubnets: new Set(clients.map((c) => c.subnet)).size,
    warnings: warns,
    etcd: diffCounters(m0, m1),
    rssMb: Math.round(process.memoryUsage().rss / 1048576),
  };
  await Promise.all(clients.map((c) => c.stop()));
  return res;
}

function diffCounters(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) {
    const d = v - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Parent helpers

class Agent {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  constructor(readonly child: ChildProcess) {
    const rl = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on('line', (line) => {
      let m: { id: number; result?: unknown; error?: string };
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        process.stderr.write(`agent: ${line}\n`);
        return;
      }
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) w.reject(new Error(`agent: ${m.error}`));
      else w.resolve(m.result);
    });
    child.on('exit', (code, sig) => {
      for (const w of this.waiting.values()) w.reject(new Error(`agent exited (${code ?? sig})`));
      this.waiting.clear();
    });
  }
  call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      (this.child.stdin as NodeJS.WritableStream).write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }
  stop(): void {
    if (this.child.exitCode === null && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

async function startAgent(c: Cluster): Promise<Agent> {
  const ns = c.etcdNs[0];
  if (!ns) throw new Error('no etcd namespace');
  // The agent dies with us, whatever ends this run.
  const [file, ...args] = dyingWithUs(['ip', 'netns', 'exec', ns.name, process.execPath, '--max-old-space-size=4096', __filename, '--agent', c.etcdEndpoints[0] as string]);
  const child = spawn(file as string, args, {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  return new Agent(child);
}

function cpuMs(pid: number): number | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const tick = 100; // USER_HZ
    return ((Number(f[11]) + Number(f[12])) * 1000) / tick;
  } catch {
    return null;
  }
}

function rssMb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

/** Rudder routes (protocol 0x52) in a host's main table. */
async function routeCount(h: Host): Promise<number> {
  const r = await h.ns.ip(['-4', 'route', 'show', 'proto', '82'], { allowFailure: true });
  let n = 0;
  for (const line of r.stdout.split('\n')) if (line.startsWith('10.') && !line.startsWith('10.0.0.0/8')) n++;
  return n;
}

/** Routes flanneld's host-gw backend made to simulated peers (10.x/24 via 198.19.x.y); flanneld marks them with no protocol of its own. */
async function flannelRouteCount(h: Host): Promise<number> {
  const r = await h.ns.ip(['-4', 'route', 'show'], { allowFailure: true });
  return countIn(r.stdout, /^10\.\d+\.\d+\.0\/24 via 198\.19\./gm);
}

function countIn(text: string, re: RegExp): number {
  return (text.match(re) ?? []).length;
}

/** Peers programmed on a host now: kernel routes, or for udp the data-plane "route set" minus "route removed" log lines of this run. */
async function programmed(h: Host, backend: string, logFrom: number): Promise<number> {
  if (backend !== 'udp') return routeCount(h);
  const text = readFrom(h.logFile, logFrom);
  return (text.match(/ route set /g) ?? []).length - (text.match(/ route removed /g) ?? []).length;
}

function readFrom(file: string, offset: number): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, size - offset));
      fs.readSync(fd, buf, 0, buf.length, offset);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function fileSize(f: string): number {
  return fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0;
}

async function waitFor(what: string, giveUpMs: number, intervalMs: number, fn: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return Date.now();
    if (Date.now() - t0 > giveUpMs) throw new Error(`gave up waiting for ${what} after ${giveUpMs} ms`);
    await sleep(intervalMs);
  }
}

const pct = (xs: readonly number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
};
const median = (xs: readonly number[]): number => pct(xs, 50);

function loadavg(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(' ');
}

// ---------------------------------------------------------------------------
// Phases

interface ProgramResult {
  backend: string;
  size: number;
  round: number;
  programmedMs: number | null;
  readyMs: number | null;
  /** VmRSS 2 s after every peer was programmed (size 0: the idle daemon). */
  rssSettledMb?: number | null;
  /** The larger of that and VmRSS right after the 1,000 lease changes (what the tables show as RSS). */
  rssMb: number | null;
  idleCpuMsPerS: number | null;
  churnCpuMs: number | null;
  churnWallMs: number | null;
  churnEtcdMs: number | null;
  /** flanneld only: routes of removed leases still there after the changes (its lost removals). */
  staleRoutes?: number;
  error?: string;
}

async function phaseProgram(c: Cluster, agent: Agent, hosts: Map<string, Host>, a: Args, log: (s: string) => void, flannel: { host: Host; bin: string } | null): Promise<ProgramResult[]> {
  const out: ProgramResult[] = [];
  for (let round = 1; round <= a.rounds; round++) {
    for (const size of a.sizes) {
      if (flannel) out.push(await programFlannel(c, agent, flannel.host, flannel.bin, size, round, a, log));
      for (const backend of a.backends) {
        const h = hosts.get(backend) as Host;
        const prefix = `/scale/${backend}`;
        const r: ProgramResult = { backend, size, round, programmedMs: null, readyMs: null, rssMb: null, idleCpuMsPerS: null, churnCpuMs: null, churnWallMs: null, churnEtcdMs: null };
        try {
          await agent.call('clear', { prefix });
          await agent.call('populate', { prefix, config: NETWORK_CONFIG(backend), n: size, backend });
          const logFrom = fileSize(h.logFile);
          const t0 = Date.now();
          const p = await h.startRudder([`-etcd-prefix=${prefix}`, ...(backend === 'udp' ? ['-v=1'] : [])]);
          const giveUp = 300_000;
          const tDone = await waitFor(`${size} ${backend} peers on ${h.name}`, giveUp, 25, async () => {
            if (!p.running) throw new Error(`daemon exited: ${h.rudderLog(2000)}`);
            return (await programmed(h, backend, logFrom)) >= size;
          });
          r.programmedMs = tDone - t0;
          await sleep(2000);
          // Kernel backends program the peers known at start before "ready", so read it afterwards.
          const readyLine = /^(\S+) info {2}ready /m.exec(readFrom(h.logFile, logFrom));
          r.readyMs = readyLine ? Date.parse(readyLine[1] as string) - t0 : null;
          r.rssMb = rssMb(p.pid);
          r.rssSettledMb = r.rssMb;
          const i0 = cpuMs(p.pid) as number;
          await sleep(6000);
          r.idleCpuMsPerS = Math.round(((cpuMs(p.pid) as number) - i0) / 6);
          const c0 = cpuMs(p.pid) as number;
          const w0 = Date.now();
          const churnLog = fileSize(h.logFile);
          const ch = await agent.call<{ ms: number; deletes: number }>('churn', { prefix, backend, n: a.churn });
          r.churnEtcdMs = ch.ms;
          // Every delete seen by the daemon (it logs each lease event before applying it), then the kernel back at `size`.
          await waitFor('churn applied', giveUp, 25, async () => countIn(readFrom(h.logFile, churnLog), / peer lease removed /g) >= ch.deletes && (await programmed(h, backend, logFrom)) === size);
          // For udp the log only shows the swap; give the last batch time to be counted anyway.
          r.churnWallMs = Date.now() - w0;
          r.churnCpuMs = (cpuMs(p.pid) as number) - c0;
          const rss2 = rssMb(p.pid);
          if (rss2 !== null && r.rssMb !== null && rss2 > r.rssMb) r.rssMb = rss2;
          log(`${backend} ${size}: programmed ${r.programmedMs} ms (ready at ${r.readyMs} ms), RSS ${r.rssSettledMb} MB settled, ${r.rssMb} MB max, idle ${r.idleCpuMsPerS} ms CPU/s, 1000 changes ${r.churnCpuMs} ms CPU over ${r.churnWallMs} ms`);
        } catch (e) {
          r.error = e instanceof Error ? e.message.slice(0, 500) : String(e);
          log(`${backend} ${size}: FAILED ${r.error}`);
        } finally {
          await h.stopRudder(60_000);
          await agent.call('clear', { prefix });
        }
        out.push(r);
      }
    }
  }
  return out;
}

/** The label of flanneld's rows in the programming results (beside Rudder's backend names). */
export const FLANNEL_ROW = 'flanneld host-gw';

/**
 * One programming run of the real flanneld (host-gw) on `h`, measured like
 * Rudder's: spawn → every peer's route in the kernel (polled every 100 ms:
 * flanneld takes tens of seconds, and a full `ip route` listing of 5,000
 * routes every 25 ms would load the CPU it is measured on), VmRSS 2 s later,
 * idle CPU, CPU for the 1,000 lease changes until its routes are back at
 * `size` and it has logged every removal ("Subnet removed"). flanneld leaves
 * its routes behind when it stops: they are flushed (10.0.0.0/8, inside the
 * host's namespace) for the next run.
 */
async function programFlannel(c: Cluster, agent: Agent, h: Host, bin: string, size: number, round: number, a: Args, log: (s: string) => void): Promise<ProgramResult> {
  const prefix = '/scale/flannel-host-gw';
  const r: ProgramResult = { backend: FLANNEL_ROW, size, round, programmedMs: null, readyMs: null, rssMb: null, idleCpuMsPerS: null, churnCpuMs: null, churnWallMs: null, churnEtcdMs: null };
  const f = new Flanneld(c, h, bin, [`-etcd-prefix=${prefix}`]);
  try {
    await agent.call('clear', { prefix });
    await agent.call('populate', { prefix, config: NETWORK_CONFIG('host-gw'), n: size, backend: 'host-gw' });
    fs.rmSync(f.subnetFile, { force: true });
    const t0 = Date.now();
    const p = await f.start();
    const giveUp = Number(process.env.RUDDER_SCALE_FLANNEL_GIVEUP_MS) || 300_000;
    let readyAt: number | null = null;
    const tDone = await waitFor(`${size} flanneld host-gw peers on ${h.name}`, giveUp, 100, async () => {
      if (!p.running) throw new Error(`flanneld exited: ${f.log(2000)}`);
      if (readyAt === null && fs.existsSync(f.subnetFile)) readyAt = Date.now();
      return (await flannelRouteCount(h)) >= size;
    });
    r.programmedMs = tDone - t0;
    await sleep(2000);
    // flanneld's "ready": its subnet file written (it writes it once its backend is up).
    const st = fs.statSync(f.subnetFile, { throwIfNoEntry: false });
    r.readyMs = st ? Math.round(st.mtimeMs - t0) : readyAt === null ? null : readyAt - t0;
    r.rssMb = rssMb(p.pid);
    r.rssSettledMb = r.rssMb;
    const i0 = cpuMs(p.pid) as number;
    await sleep(6000);
    r.idleCpuMsPerS = Math.round(((cpuMs(p.pid) as number) - i0) / 6);
    // flanneld logs no line per applied event that could be counted (and loses some
    // removals: "Removed subnet ... were not found"), so its route count is followed
    // while the changes go in: done when it rose and came back to `size`, or has not
    // moved for 5 s after the last change was written (then the leftover routes are
    // reported as stale). CPU and time are taken at its last change.
    const c0 = cpuMs(p.pid) as number;
    const w0 = Date.now();
    let last = { n: size, t: w0, cpu: c0 };
    let rose = false;
    let written = false;
    const churn = agent.call<{ ms: number; deletes: number }>('churn', { prefix, backend: 'host-gw', n: a.churn }).then((x) => {
      written = true;
      return x;
    });
    for (;;) {
      const n = await flannelRouteCount(h);
      const now = Date.now();
      if (n !== last.n) last = { n, t: now, cpu: cpuMs(p.pid) ?? last.cpu };
      if (n > size) rose = true;
      if (written && ((rose && n === size) || now - last.t > 5000)) break;
      if (now - w0 > giveUp) throw new Error(`flanneld churn: gave up after ${giveUp} ms (${n} routes, want ${size})`);
      if (!p.running) throw new Error(`flanneld exited: ${f.log(2000)}`);
      await sleep(100);
    }
    r.churnEtcdMs = (await churn).ms;
    r.churnWallMs = last.t - w0;
    r.churnCpuMs = last.cpu - c0;
    r.staleRoutes = last.n - size;
    const rss2 = rssMb(p.pid);
    if (rss2 !== null && r.rssMb !== null && rss2 > r.rssMb) r.rssMb = rss2;
    log(`${FLANNEL_ROW} ${size}: programmed ${r.programmedMs} ms (subnet file at ${r.readyMs} ms), RSS ${r.rssSettledMb} MB settled, ${r.rssMb} MB max, idle ${r.idleCpuMsPerS} ms CPU/s, ${a.churn} changes ${r.churnCpuMs} ms CPU over ${r.churnWallMs} ms, ${r.staleRoutes} stale routes left`);
  } catch (e) {
    r.error = e instanceof Error ? e.message.slice(0, 500) : String(e);
    log(`${FLANNEL_ROW} ${size}: FAILED ${r.error} (log ${f.logFile})`);
  } finally {
    await f.stop(30_000);
    await h.ns.ip(['-4', 'route', 'flush', 'root', '10.0.0.0/8'], { allowFailure: true });
    await agent.call('clear', { prefix });
  }
  return r;
}

interface PropResult {
  watchers: number;
  base: number;
  leases: number;
  startAllMs: number;
  allProgrammedMs: number | null;
  samples: number;
  missing: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
  slowestWatcherMedianMs: number;
  /** From the put's acknowledgement (etcd committed) instead of before the put. */
  fromCommitMedianMs: number;
  fromCommitP99Ms: number;
  putAckP99Ms: number;
  slowestWatcherP99Ms: number;
  putAckMedianMs: number;
  rssMbMedian: number;
  rssMbMax: number;
  etcdSteady: { seconds: number; perSecond: Record<string, number> };
  etcdRestart: { seconds: number; total: Record<string, number>; allBackMs: number; sameSubnet: number };
  latencies: number[];
}

/** `ip -ts monitor route` in a namespace: the first arrival time (ms epoch) of each 10.x route. */
function monitorRoutes(h: Host, seen: Map<string, number>): ChildProcess {
  const [file, ...args] = dyingWithUs(['ip', '-n', h.ns.name, '-ts', 'monitor', 'route']);
  const child = spawn(file as string, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  const rl = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
  rl.on('line', (line) => {
    const m = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\] (10\.\d+\.\d+\.\d+\/\d+) via /.exec(line);
    if (!m) return;
    const [date, frac] = (m[1] as string).split('.') as [string, string];
    const t = new Date(date).getTime() + Number(frac) / 10 ** (frac.length - 3); // local time, as ip prints it
    if (!seen.has(m[2] as string)) seen.set(m[2] as string, t);
  });
  return child;
}

async function phaseProp(c: Cluster, agent: Agent, watchers: Host[], a: Args, log: (s: string) => void): Promise<PropResult> {
  const prefix = '/scale/prop';
  await agent.call('clear', { prefix });
  await agent.call('populate', { prefix, config: NETWORK_CONFIG('host-gw'), n: a.base, backend: 'host-gw' });
  const t0 = Date.now();
  // Staggered by 100 ms so 50 Node processes do not all start on 2 CPUs at once.
  for (const h of watchers) {
    await h.startRudder([`-etcd-prefix=${prefix}`]);
    await sleep(100);
  }
  await Promise.all(watchers.map((h) => h.waitSubnetFile({ giveUpMs: 600_000 })));
  const startAllMs = Date.now() - t0;
  let allProgrammedMs: number | null = null;
  try {
    const t = await waitFor('base routes on every watcher', 600_000, 200, async () => {
      for (const h of watchers) if ((await routeCount(h)) < a.base + watchers.length - 1) return false;
      return true;
    });
    allProgrammedMs = t - t0;
  } catch (e) {
    log(`propagation: ${(e as Error).message}`);
  }
  log(`propagation: ${watchers.length} watchers up in ${startAllMs} ms, base routes everywhere at ${allProgrammedMs} ms`);
  await sleep(3000);
  const rss = watchers.map((h) => rssMb(h.rudder?.pid ?? 0) ?? 0);

  // Steady-state etcd load.
  const steadyS = 20;
  const m0 = await agent.call<{ t: number; counters: Record<string, number> }>('metrics');
  await sleep(steadyS * 1000);
  const m1 = await agent.call<{ t: number; counters: Record<string, number> }>('metrics');
  const perSecond: Record<string, number> = {};
  for (const [k, v] of Object.entries(diffCounters(m0.counters, m1.counters))) perSecond[k] = Math.round((v / ((m1.t - m0.t) / 1000)) * 100) / 100;
  log(`etcd at steady state: ${JSON.stringify(perSecond)}`);

  // Propagation.
  const seen = watchers.map(() => new Map<string, number>());
  const monitors = watchers.map((h, i) => monitorRoutes(h, seen[i] as Map<string, number>));
  let latencies: number[] = [];
  const fromCommit: number[] = [];
  const slowest: number[] = [];
  let missing = 0;
  let acks: number[] = [];
  try {
    await sleep(1000);
    const w = await agent.call<{ writes: Array<{ subnet: string; t: number; ackMs: number }> }>('propWrite', { prefix, backend: 'host-gw', count: a.propLeases, gapMs: 250 });
    await sleep(3000);
    acks = w.writes.map((x) => x.ackMs);
    for (const wr of w.writes) {
      let worst = 0;
      for (const s of seen) {
        const at = s.get(wr.subnet);
        if (at === undefined) {
          missing++;
          continue;
        }
        latencies.push(at - wr.t);
        fromCommit.push(at - (wr.t + wr.ackMs));
        worst = Math.max(worst, at - wr.t);
      }
      slowest.push(worst);
    }
  } finally {
    for (const m of monitors) if (m.pid !== undefined && m.exitCode === null) process.kill(m.pid, 'SIGKILL');
  }
  latencies = latencies.map((x) => Math.round(x * 10) / 10);
  log(`propagation: median ${median(latencies)} ms, p99 ${pct(latencies, 99)} ms, slowest-watcher p99 ${pct(slowest, 99)} ms, missing ${missing}`);

  // Mass restart of every watcher daemon.
  const before = watchers.map((h) => h.readSubnetFile()?.subnet);
  const stamps = watchers.map((h) => h.subnetFileStamp());
  await Promise.all(watchers.map((h) => h.stopRudder(60_000)));
  const r0 = await agent.call<{ t: number; counters: Record<string, number> }>('metrics');
  const tr = Date.now();
  await Promise.all(watchers.map((h) => h.startRudder([`-etcd-prefix=${prefix}`])));
  const envs = await Promise.all(watchers.map((h, i) => h.waitSubnetFile({ changedSince: stamps[i] ?? null, giveUpMs: 600_000 })));
  const allBackMs = Date.now() - tr;
  await sleep(2000);
  const r1 = await agent.call<{ t: number; counters: Record<string, number> }>('metrics');
  const same = envs.filter((e, i) => e.subnet === before[i]).length;
  log(`mass restart of ${watchers.length} daemons: all back in ${allBackMs} ms, ${same} with the same subnet`);
  await Promise.all(watchers.map((h) => h.stopRudder(60_000)));
  await agent.call('clear', { prefix });
  return {
    watchers: watchers.length,
    base: a.base,
    leases: a.propLeases,
    startAllMs,
    allProgrammedMs,
    samples: latencies.length,
    missing,
    medianMs: median(latencies),
    p99Ms: pct(latencies, 99),
    maxMs: Math.max(...latencies),
    slowestWatcherMedianMs: median(slowest),
    fromCommitMedianMs: median(fromCommit),
    fromCommitP99Ms: pct(fromCommit, 99),
    putAckP99Ms: pct(acks, 99),
    slowestWatcherP99Ms: pct(slowest, 99),
    putAckMedianMs: median(acks),
    rssMbMedian: median(rss),
    rssMbMax: Math.max(...rss),
    etcdSteady: { seconds: steadyS, perSecond },
    etcdRestart: { seconds: Math.round((r1.t - r0.t) / 100) / 10, total: diffCounters(r0.counters, r1.counters), allBackMs, sameSubnet: same },
    latencies,
  };
}

interface RestartResult {
  n: number;
  base: number;
  firstStartMs: number;
  restartMs: number;
  acquiredMs: number[];
  listedMs: number[];
  sameSubnet: number;
  distinctSubnets: number;
  warnings: number;
  etcd: Record<string, number>;
  rssMb: number;
}

async function phaseRestart(agent: Agent, a: Args, log: (s: string) => void): Promise<RestartResult> {
  const prefix = '/scale/restart';
  await agent.call('clear', { prefix });
  await agent.call('populate', { prefix, config: NETWORK_CONFIG('host-gw'), n: a.base, backend: 'host-gw' });
  const r = await agent.call<Omit<RestartResult, 'base'>>('restart', { prefix, n: a.restart });
  log(`mass restart of ${r.n} registry clients: all back in ${r.restartMs} ms (acquired p50 ${median(r.acquiredMs)} / max ${Math.max(...r.acquiredMs)} ms; listed max ${Math.max(...r.listedMs)} ms), same subnet ${r.sameSubnet}/${r.n}, etcd ${JSON.stringify(r.etcd)}`);
  await agent.call('clear', { prefix });
  return { ...r, base: a.base };
}

// ---------------------------------------------------------------------------
// Report

interface Report {
  date: string;
  label: string;
  kernel: string;
  cpus: number;
  loadBefore: string;
  loadAfter: string;
  durationS: number;
  args: Omit<Args, 'phases'> & { phases: string[] };
  program: ProgramResult[];
  /** --flannel asked for, but flanneld cannot run here: why (anchors missing, ...). */
  flannelUnavailable?: string;
  prop: PropResult | null;
  restart: RestartResult | null;
}

function fmt(x: number | null | undefined, unit = ''): string {
  return x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : `${Math.round(x * 10) / 10}${unit}`;
}

function medOf(rs: ProgramResult[], f: (r: ProgramResult) => number | null): number | null {
  const v = rs.map(f).filter((x): x is number => x !== null);
  return v.length ? median(v) : null;
}

export function markdown(r: Report): string {
  const o: string[] = [];
  o.push(`Run ${r.date}${r.label ? ` (${r.label})` : ''}: kernel ${r.kernel}, ${r.cpus} CPUs, load average ${r.loadBefore} before / ${r.loadAfter} after, ${r.durationS} s; rounds ${r.args.rounds} (medians).`);
  o.push('');
  if (r.program.length) {
    o.push('| backend | peers | all programmed (from spawn) | daemon ready at | RSS settled / max | idle CPU | CPU per 1,000 lease changes | 1,000 changes applied in |');
    o.push('|---|---|---|---|---|---|---|---|');
    const rowsOf = [...r.args.backends, ...(r.args.flannel ? [FLANNEL_ROW] : [])];
    for (const size of r.args.sizes) {
      for (const b of rowsOf) {
        const rs = r.program.filter((x) => x.backend === b && x.size === size);
        const errs = rs.filter((x) => x.error).length;
        o.push(
          `| ${b} | ${size.toLocaleString('en')} | ${fmt(medOf(rs, (x) => x.programmedMs), ' ms')} | ${fmt(medOf(rs, (x) => x.readyMs), ' ms')} | ${fmt(medOf(rs, (x) => x.rssSettledMb ?? null), '')} / ${fmt(medOf(rs, (x) => x.rssMb), ' MB')} | ${fmt(medOf(rs, (x) => x.idleCpuMsPerS), ' ms/s')} | ${fmt(medOf(rs, (x) => x.churnCpuMs), ' ms')} | ${fmt(medOf(rs, (x) => x.churnWallMs), ' ms')}${errs ? ` (${errs} failed)` : ''} |`,
        );
      }
    }
    o.push('');
    if (r.args.flannel) o.push(...flannelSideBySide(r), '');
  }
  if (r.prop) {
    const p = r.prop;
    o.push(`Propagation (${p.watchers} host-gw daemons watching, ${p.base.toLocaleString('en')} base leases, ${p.leases} new leases 250 ms apart; ${p.samples} lease×watcher samples, ${p.missing} missing):`);
    o.push('');
    o.push('| lease written → route in the kernel | median | p99 | max |');
    o.push('|---|---|---|---|');
    o.push(`| on each watcher | ${fmt(p.medianMs, ' ms')} | ${fmt(p.p99Ms, ' ms')} | ${fmt(p.maxMs, ' ms')} |`);
    o.push(`| on all ${p.watchers} watchers (slowest) | ${fmt(p.slowestWatcherMedianMs, ' ms')} | ${fmt(p.slowestWatcherP99Ms, ' ms')} | |`);
    o.push(`| on each watcher, from the put's ack (etcd committed) | ${fmt(p.fromCommitMedianMs, ' ms')} | ${fmt(p.fromCommitP99Ms, ' ms')} | |`);
    o.push(`| (etcd put round trip itself) | ${fmt(p.putAckMedianMs, ' ms')} | ${fmt(p.putAckP99Ms, ' ms')} | |`);
    o.push('');
    o.push(`etcd put acknowledged in ${fmt(p.putAckMedianMs, ' ms')} (median). ${p.watchers} daemons: started and ready in ${fmt(p.startAllMs, ' ms')} (100 ms apart), every base route on every watcher at ${fmt(p.allProgrammedMs, ' ms')}; RSS median ${fmt(p.rssMbMedian, ' MB')}, max ${fmt(p.rssMbMax, ' MB')}.`);
    o.push('');
    const calls = (m: Record<string, number>): string =>
      Object.entries(m)
        .filter(([k]) => k.startsWith('calls:') || k.startsWith('msgs:'))
        .sort((x, y) => y[1] - x[1])
        .map(([k, v]) => `${k.replace('calls:', '').replace('msgs:', 'msgs ')} ${fmt(v)}`)
        .join(', ');
    o.push(`etcd load, steady state (${p.etcdSteady.seconds} s, ${p.watchers} daemons, default lease TTL 24 h): ${calls(p.etcdSteady.perSecond) || 'no requests'} per second.`);
    o.push('');
    o.push(`etcd load, mass restart of all ${p.watchers} daemons (SIGTERM all, start all at once): every daemon back with its subnet file in ${fmt(p.etcdRestart.allBackMs, ' ms')} (${p.etcdRestart.sameSubnet}/${p.watchers} same subnet); over ${p.etcdRestart.seconds} s: ${calls(p.etcdRestart.total)} (totals); ${fmt((p.etcdRestart.total['calls:Range'] ?? 0) / p.etcdRestart.seconds)} Range/s.`);
    o.push('');
  }
  if (r.restart) {
    const x = r.restart;
    o.push(`Mass restart of ${x.n} registry clients (SubnetManager + LeaseWatcher, one etcd connection each, ${x.base.toLocaleString('en')} other leases): all stopped, all started at once. Every client held its subnet again after ${fmt(Math.max(...x.acquiredMs), ' ms')} (median ${fmt(median(x.acquiredMs), ' ms')}, p99 ${fmt(pct(x.acquiredMs, 99), ' ms')}); watchers listed by ${fmt(Math.max(...x.listedMs), ' ms')}; ${x.sameSubnet}/${x.n} the same subnet, ${x.distinctSubnets} distinct; ${x.warnings} warnings (etcd retries) logged. etcd requests during the restart: ${Object.entries(x.etcd).filter(([k]) => k.startsWith('calls:')).map(([k, v]) => `${k.slice(6)} ${v}`).join(', ')}.`);
    o.push('');
  }
  return o.join('\n');
}

/**
 * `--flannel`: Rudder's host-gw beside the real flanneld's, per size: the
 * medians of the rows above side by side, and rudder / flanneld.
 */
export function flannelSideBySide(r: Report): string[] {
  const o: string[] = [];
  o.push(`Beside the real flanneld (v0.20.2, host-gw; issue 17: 5,000 peers programmed faster than flanneld, RSS ≤ 1.5× flanneld's):`);
  o.push('');
  if (r.flannelUnavailable !== undefined) {
    o.push(`${FLANNEL_ROW}: n/a (${r.flannelUnavailable})`);
    return o;
  }
  o.push('| peers | | rudder host-gw | flanneld host-gw | rudder / flanneld |');
  o.push('|---|---|---|---|---|');
  const ratioText = (x: number | null, y: number | null): string => (x !== null && y !== null && y > 0 ? `${(x / y).toFixed(2)}×` : 'n/a');
  for (const size of r.args.sizes) {
    const ru = r.program.filter((x) => x.backend === 'host-gw' && x.size === size);
    const fl = r.program.filter((x) => x.backend === FLANNEL_ROW && x.size === size);
    const rows: Array<[string, (x: ProgramResult) => number | null, string]> = [
      ['all programmed (from spawn)', (x) => x.programmedMs, ' ms'],
      ['RSS settled', (x) => x.rssSettledMb ?? null, ' MB'],
      ['RSS max (after 1,000 changes)', (x) => x.rssMb, ' MB'],
      ['idle CPU', (x) => x.idleCpuMsPerS, ' ms/s'],
      ['CPU per 1,000 lease changes', (x) => x.churnCpuMs, ' ms'],
    ];
    for (const [what, f, unit] of rows) {
      const a = ru.length ? medOf(ru, f) : null;
      const b = fl.length ? medOf(fl, f) : null;
      o.push(`| ${size.toLocaleString('en')} | ${what} | ${ru.length ? fmt(a, unit) : 'not run'} | ${fmt(b, unit)} | ${ratioText(a, b)} |`);
    }
    const stale = fl.filter((x) => (x.staleRoutes ?? 0) > 0).map((x) => x.staleRoutes as number);
    if (stale.length) o.push(`| ${size.toLocaleString('en')} | routes of removed leases left behind | 0 | ${Math.max(...stale)} (flanneld lost removals) | |`);
  }
  return o;
}

function xmlEsc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Time to program every peer, by backend and size (bars, log-free linear axis), plus the propagation CDF. */
export function svgChart(r: Report): string {
  const W = 900;
  const H = 420;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">Rudder control plane at scale</text>`);
  o.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${xmlEsc(`${r.date}${r.label ? ` · ${r.label}` : ''} · ${r.cpus} CPUs · load ${r.loadBefore}`)}</text>`);
  // Left: programming time bars.
  const left = 60;
  const top = 70;
  const ph = 280;
  const pw = 380;
  const colors: Record<string, string> = { udp: '#4e79a7', vxlan: '#f28e2b', 'host-gw': '#59a14f' };
  const vals = r.program.filter((x) => x.programmedMs !== null).map((x) => x.programmedMs as number);
  const maxV = Math.max(2000, ...vals) * 1.1;
  const y = (v: number): number => top + ph - (v / maxV) * ph;
  o.push(`<text x="${left + pw / 2}" y="${top - 12}" text-anchor="middle" font-weight="bold">spawn → every peer programmed (ms)</text>`);
  for (let g = 0; g <= 4; g++) {
    const v = (maxV / 4) * g;
    o.push(`<line x1="${left}" x2="${left + pw}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    o.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="#555">${Math.round(v)}</text>`);
  }
  o.push(`<line x1="${left}" x2="${left + pw}" y1="${y(2000).toFixed(1)}" y2="${y(2000).toFixed(1)}" stroke="#c00" stroke-dasharray="4 3"/>`);
  o.push(`<text x="${left + pw}" y="${(y(2000) - 4).toFixed(1)}" text-anchor="end" fill="#c00" font-size="10">target 2 s (5,000)</text>`);
  const groups = r.args.sizes.filter((s) => s > 0); // size 0 (idle RSS) has nothing to program
  const gw = pw / Math.max(1, groups.length);
  const bw = (gw - 30) / Math.max(1, r.args.backends.length);
  groups.forEach((size, gi) => {
    r.args.backends.forEach((b, bi) => {
      const v = medOf(r.program.filter((x) => x.backend === b && x.size === size), (x) => x.programmedMs);
      const bx = left + gi * gw + 15 + bi * bw;
      if (v === null) {
        o.push(`<text x="${(bx + bw / 2).toFixed(1)}" y="${(y(0) - 6).toFixed(1)}" text-anchor="middle" fill="#999">n/a</text>`);
        return;
      }
      o.push(`<rect x="${bx.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 3).toFixed(1)}" height="${(y(0) - y(v)).toFixed(1)}" fill="${colors[b] ?? '#888'}"><title>${xmlEsc(`${b} ${size}: ${Math.round(v)} ms`)}</title></rect>`);
      o.push(`<text x="${(bx + bw / 2 - 1).toFixed(1)}" y="${(y(v) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${Math.round(v)}</text>`);
    });
    o.push(`<text x="${(left + gi * gw + gw / 2).toFixed(1)}" y="${(y(0) + 18).toFixed(1)}" text-anchor="middle">${size.toLocaleString('en')} peers</text>`);
  });
  r.args.backends.forEach((b, i) => {
    o.push(`<rect x="${left + i * 90}" y="${top + ph + 30}" width="12" height="12" fill="${colors[b] ?? '#888'}"/>`);
    o.push(`<text x="${left + i * 90 + 16}" y="${top + ph + 40}">${xmlEsc(b)}</text>`);
  });
  // Right: propagation latency CDF.
  if (r.prop && r.prop.latencies.length) {
    const lx = 520;
    const lw = 340;
    const lat = [...r.prop.latencies].sort((a, b) => a - b);
    const maxL = Math.max(100, pct(lat, 100)) * 1.05;
    const xs = (v: number): number => lx + (v / maxL) * lw;
    const ys = (f: number): number => top + ph - f * ph;
    o.push(`<text x="${lx + lw / 2}" y="${top - 12}" text-anchor="middle" font-weight="bold">${xmlEsc(`lease written → route on a watcher (${r.prop.watchers} watchers)`)}</text>`);
    for (let g = 0; g <= 4; g++) {
      o.push(`<line x1="${lx}" x2="${lx + lw}" y1="${ys(g / 4).toFixed(1)}" y2="${ys(g / 4).toFixed(1)}" stroke="#ddd"/>`);
      o.push(`<text x="${lx - 6}" y="${(ys(g / 4) + 4).toFixed(1)}" text-anchor="end" fill="#555">${g * 25}%</text>`);
      const v = (maxL / 4) * g;
      o.push(`<text x="${xs(v).toFixed(1)}" y="${(ys(0) + 16).toFixed(1)}" text-anchor="middle" fill="#555">${Math.round(v)} ms</text>`);
    }
    o.push(`<line x1="${xs(100).toFixed(1)}" x2="${xs(100).toFixed(1)}" y1="${top}" y2="${top + ph}" stroke="#c00" stroke-dasharray="4 3"/>`);
    o.push(`<text x="${(xs(100) + 4).toFixed(1)}" y="${top + 12}" fill="#c00" font-size="10">p99 target 100 ms</text>`);
    const step = Math.max(1, Math.floor(lat.length / 400));
    const pts: string[] = [];
    for (let i = 0; i < lat.length; i += step) pts.push(`${xs(lat[i] as number).toFixed(1)},${ys((i + 1) / lat.length).toFixed(1)}`);
    pts.push(`${xs(lat[lat.length - 1] as number).toFixed(1)},${ys(1).toFixed(1)}`);
    o.push(`<polyline fill="none" stroke="#59a14f" stroke-width="2" points="${pts.join(' ')}"/>`);
    o.push(`<text x="${lx + lw}" y="${top + ph + 40}" text-anchor="end">${xmlEsc(`median ${fmt(r.prop.medianMs)} ms · p99 ${fmt(r.prop.p99Ms)} ms · n=${lat.length}`)}</text>`);
  }
  o.push('</svg>');
  return o.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// Main

async function main(a: Args): Promise<number> {
  const log = (s: string): void => void process.stdout.write(`scale: ${s}\n`);
  const started = Date.now();
  const loadBefore = loadavg();
  let c: Cluster | undefined;
  let agentP: Agent | undefined;
  const onSignal = (): void => {
    agentP?.stop();
    void c?.teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const needProp = a.phases.has('prop');
    c = await createCluster({ hosts: 0, prefix: 'rsc', giveUpMs: 600_000, ...(a.rudderBin !== null ? { rudderBin: a.rudderBin } : {}) });
    const agent = await startAgent(c);
    agentP = agent;
    const hosts = new Map<string, Host>();
    if (a.phases.has('program')) for (const b of a.backends) hosts.set(b, await c.addHost());
    // --flannel: the real flanneld beside Rudder in the programming phase, on a host of its own.
    let flannel: { host: Host; bin: string } | null = null;
    let flannelUnavailable: string | null = null;
    if (a.flannel && a.phases.has('program')) {
      const why = flanneldUnavailable();
      if (why === false) flannel = { host: await c.addHost(), bin: await flanneldBinary() };
      else {
        flannelUnavailable = why;
        log(`${FLANNEL_ROW}: n/a (${why})`);
      }
    }
    const watchers: Host[] = [];
    if (needProp) for (let i = 0; i < a.watchers; i++) watchers.push(await c.addHost());
    log(`cluster ${c.tag.name('*')} up: ${c.hosts.length} hosts; load ${loadavg()}`);

    const program = a.phases.has('program') ? await phaseProgram(c, agent, hosts, a, log, flannel) : [];
    const prop = needProp ? await phaseProp(c, agent, watchers, a, log) : null;
    const restart = a.phases.has('restart') ? await phaseRestart(agent, a, log) : null;

    const report: Report = {
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      label: a.label,
      kernel: os.release(),
      cpus: os.cpus().length,
      loadBefore,
      loadAfter: loadavg(),
      durationS: Math.round((Date.now() - started) / 1000),
      args: { ...a, phases: [...a.phases] },
      program,
      ...(flannelUnavailable !== null ? { flannelUnavailable } : {}),
      prop,
      restart,
    };
    const md = markdown(report);
    process.stdout.write('\n' + md + '\n');
    if (a.json) fs.writeFileSync(a.json, JSON.stringify(report, null, 2) + '\n');
    if (a.write) {
      const root = path.resolve(__dirname, '..', '..');
      fs.mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
      fs.writeFileSync(path.join(root, 'bench', 'results', 'scale.json'), JSON.stringify(report, null, 2) + '\n');
      fs.writeFileSync(path.join(root, 'bench', 'results', 'scale.md'), md + '\n');
      fs.writeFileSync(path.join(root, 'docs', 'scale.svg'), svgChart(report));
      const png = svgToPng(path.join(root, 'docs', 'scale.svg'));
      log(`wrote bench/results/scale.{json,md} and docs/scale.svg${'png' in png ? ' and docs/scale.png' : ` (no PNG: ${png.error})`}`);
    }
    return 0;
  } finally {
    agentP?.stop();
    await c?.teardown();
  }
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const job = argv[0] === '--agent' ? agent(argv[1] as string).then(() => 0) : main(parseArgs(argv));
  job.then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`scale: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}

