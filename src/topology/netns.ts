/**
 * Network namespaces for the one-machine topology, driven with iproute2.
 * (Only the harness runs `ip`; the daemon talks rtnetlink itself.)
 *
 * Safety rules this module enforces rather than trusts callers with:
 *  - every `ip` command names a namespace (`ip -n NS ...`), so nothing here
 *    can add an address, route or link to the machine's own namespace; veth
 *    pairs are created directly inside namespaces, never in the root one;
 *  - every namespace name starts with a per-run tag, and every namespace and
 *    process is entered in a `Cleanup` registry that removes it however the
 *    run ends (normal end, exception, SIGINT/SIGTERM, process exit);
 *  - processes are ended by PID, never by name.
 * A run that is SIGKILLed cannot clean up; its daemons die with it (see
 * `dieWithParent` in exec.ts) and `removeLeftovers()` sweeps its namespaces
 * on the next start.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManagedProcess, TopologyError, pidAlive, run, runSync, type RunOptions, type RunResult } from './exec';
import { removeDir } from './util';

/** Default prefix of every namespace the harness makes: `rd<tag>-<role>`. */
export const DEFAULT_PREFIX = 'rd';

const MAX_IFNAME = 15; // IFNAMSIZ - 1

export function checkIfname(name: string): string {
  if (name.length === 0 || name.length > MAX_IFNAME || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new TopologyError('E_INTERNAL', `invalid interface name ${JSON.stringify(name)}: 1..${MAX_IFNAME} chars of [A-Za-z0-9_.-]`);
  }
  return name;
}

// ---------------------------------------------------------------------------
// Run tags and ownership markers

/**
 * Where each live run records its owner (PID + process start time). The
 * leftover sweep removes a tag's namespaces only when its owner is gone, so
 * two runs on one machine (two engineers, or the sandbox next to the tests)
 * never delete each other's topology. /run is a tmpfs: markers and
 * namespaces both vanish on reboot, so they cannot disagree.
 */
function markerDir(): string {
  const dir = fs.existsSync('/run') && isWritable('/run') ? '/run/rudder-topology' : path.join(os.tmpdir(), 'rudder-topology');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function isWritable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat); guards against PID reuse. */
function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // field 22 overall; fields[0] is field 3
  } catch {
    return null;
  }
}

interface Marker {
  pid: number;
  startTime: string | null;
  /** Directories of the run (logs, data) to remove with its leftovers. */
  dirs: string[];
}

const TAG_LEN = 4;

function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) {
    throw new TopologyError('E_INTERNAL', `namespace prefix ${JSON.stringify(prefix)}: 1..6 chars [a-z0-9], starting with a letter`);
  }
}

/** A per-run name tag: namespaces are `<prefix><tag>-<role>`, e.g. `rdk3x9-h1`. */
export class RunTag {
  readonly prefix: string;
  readonly tag: string;
  private readonly markerFile: string;
  private readonly dirs: string[] = [];

  private constructor(prefix: string, tag: string) {
    this.prefix = prefix;
    this.tag = tag;
    this.markerFile = path.join(markerDir(), `${prefix}${tag}.json`);
  }

  /**
   * A fresh tag not used by any live namespace; the ownership marker is
   * written before any namespace exists so a concurrent leftover sweep can
   * never mistake this run for a dead one.
   */
  static create(prefix = DEFAULT_PREFIX): RunTag {
    checkPrefix(prefix);
    const existing = new Set(listNetnsSync());
    for (let attempt = 0; attempt < 100; attempt++) {
      const tag = crypto.randomBytes(4).readUInt32BE(0).toString(36).padStart(TAG_LEN, '0').slice(-TAG_LEN);
      const t = new RunTag(prefix, tag);
      if ([...existing].some((n) => n.startsWith(`${prefix}${tag}-`))) continue;
      try {
        fs.writeFileSync(t.markerFile, t.markerJson(), { flag: 'wx' });
      } catch {
        continue; // another run took this tag a moment ago
      }
      return t;
    }
    throw new TopologyError('E_INTERNAL', 'could not find an unused run tag');
  }

  /** `rdk3x9-h1` for role `h1`. */
  name(role: string): string {
    return `${this.prefix}${this.tag}-${role}`;
  }

  /** Remembers a directory of this run, so a leftover sweep after a crash removes it too. */
  recordDir(dir: string): void {
    this.dirs.push(dir);
    try {
      fs.writeFileSync(this.markerFile, this.markerJson());
    } catch {
      // Losing the record only means a crashed run leaves a temp dir behind.
    }
  }

  release(): void {
    fs.rmSync(this.markerFile, { force: true });
  }

  private markerJson(): string {
    const m: Marker = { pid: process.pid, startTime: processStartTime(process.pid), dirs: this.dirs };
    return JSON.stringify(m);
  }
}

function readMarker(file: string): Marker | null {
  try {
    const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Marker>;
    if (typeof m.pid !== 'number') return null;
    return { pid: m.pid, startTime: typeof m.startTime === 'string' ? m.startTime : null, dirs: Array.isArray(m.dirs) ? m.dirs.filter((d) => typeof d === 'string') : [] };
  } catch {
    return null;
  }
}

function ownerAlive(m: Marker): boolean {
  return pidAlive(m.pid) && (m.startTime === null || processStartTime(m.pid) === m.startTime);
}

// ---------------------------------------------------------------------------
// Namespace listing and removal (sync: these also run from 'exit' handlers)

function parseNetnsList(out: string): string[] {
  // `ip netns list` prints "name" or "name (id: 3)".
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

export function listNetnsSync(): string[] {
  const r = runSync(['ip', 'netns', 'list']);
  return r.code === 0 ? parseNetnsList(r.stdout) : [];
}

export async function listNetns(): Promise<string[]> {
  return parseNetnsList((await run(['ip', 'netns', 'list'])).stdout);
}

function netnsPidsSync(name: string): number[] {
  const r = runSync(['ip', 'netns', 'pids', name]);
  if (r.code !== 0) return [];
  return r.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((p) => p !== process.pid);
}

/**
 * Kills (SIGKILL, by PID) every process still inside the namespace, then
 * deletes it. Interfaces inside go with it; a veth whose peer lived here
 * disappears from the other namespace too. Idempotent.
 */
export function deleteNetnsSync(name: string): void {
  for (const pid of netnsPidsSync(name)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (!listNetnsSync().includes(name)) return;
  const r = runSync(['ip', 'netns', 'del', name]);
  if (r.code !== 0 && listNetnsSync().includes(name)) {
    throw new TopologyError('E_INTERNAL', `command failed: ip netns del ${name}: ${r.stderr.trim()}`, {
      command: `ip netns del ${name}`,
      exitCode: r.code,
      stderr: r.stderr,
    });
  }
}

/**
 * Runs with this prefix whose owner process is alive (e.g. a sandbox already
 * running under that name): `run` is `<prefix><tag>`, `pid` its owner.
 */
export function liveRuns(prefix = DEFAULT_PREFIX): Array<{ run: string; pid: number }> {
  checkPrefix(prefix);
  const markerShape = new RegExp(`^(${prefix}[a-z0-9]{${TAG_LEN}})\\.json$`);
  const dir = markerDir();
  const out: Array<{ run: string; pid: number }> = [];
  for (const f of fs.readdirSync(dir)) {
    const runName = markerShape.exec(f)?.[1];
    if (runName === undefined) continue;
    const m = readMarker(path.join(dir, f));
    if (m && ownerAlive(m)) out.push({ run: runName, pid: m.pid });
  }
  return out;
}

export interface LeftoverReport {
  namespaces: string[];
  dirs: string[];
}

/**
 * Removes what runs that were killed left behind: namespaces named
 * `<prefix>...` whose run tag has no live owner, plus their recorded temp
 * dirs. Live runs (another test, a running sandbox) are left alone. The
 * sandbox calls this at start.
 */
export function removeLeftovers(prefix = DEFAULT_PREFIX): LeftoverReport {
  checkPrefix(prefix);
  // Only names of exactly the shape RunTag makes (`<prefix><4 chars>-<role>`),
  // so namespaces of other tools that merely start with the prefix are safe.
  const nsShape = new RegExp(`^(${prefix}[a-z0-9]{${TAG_LEN}})-[A-Za-z0-9_.-]+$`);
  const markerShape = new RegExp(`^(${prefix}[a-z0-9]{${TAG_LEN}})\\.json$`);
  const report: LeftoverReport = { namespaces: [], dirs: [] };
  const dir = markerDir();
  const liveRuns = new Set<string>();
  for (const f of fs.readdirSync(dir)) {
    const runName = markerShape.exec(f)?.[1];
    if (runName === undefined) continue;
    const m = readMarker(path.join(dir, f));
    if (m && ownerAlive(m)) {
      liveRuns.add(runName);
      continue;
    }
    for (const d of m?.dirs ?? []) {
      removeDir(d);
      report.dirs.push(d);
    }
    fs.rmSync(path.join(dir, f), { force: true });
  }
  for (const ns of listNetnsSync()) {
    const runName = nsShape.exec(ns)?.[1];
    if (runName === undefined || liveRuns.has(runName)) continue;
    deleteNetnsSync(ns);
    report.namespaces.push(ns);
  }
  return report;
}

// ---------------------------------------------------------------------------
// The clean-up registry

const liveRegistries = new Set<Cleanup>();
let hooksInstalled = false;

function installProcessHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' also fires after an uncaught exception or unhandled rejection and
  // after process.exit(); only synchronous work is possible there.
  process.on('exit', () => {
    for (const c of [...liveRegistries]) c.runSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const c of [...liveRegistries]) c.runSync();
      process.removeListener(sig, onSignal);
      // Keep the default meaning of the signal (die) unless the program has
      // its own handler for it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * Everything a run created, removed in a safe order: processes first (by PID,
 * SIGTERM then SIGKILL), then custom hooks (newest first), then namespaces,
 * then directories. `run()` is the normal, graceful path; `runSync()` is the
 * last-resort path used from process exit and signal handlers.
 */
export class Cleanup {
  private readonly processes = new Set<ManagedProcess>();
  private readonly namespaces: string[] = [];
  private readonly dirs: string[] = [];
  private readonly hooks: Array<{ async: () => Promise<void> | void; sync?: () => void }> = [];
  private done = false;

  constructor(readonly label = 'topology') {
    installProcessHooks();
    liveRegistries.add(this);
  }

  addProcess(p: ManagedProcess): void {
    this.processes.add(p);
    // A process that ended on its own needs no clean-up.
    void p.exited.then(() => this.processes.delete(p));
  }

  forgetProcess(p: ManagedProcess): void {
    this.processes.delete(p);
  }

  addNetns(name: string): void {
    if (!this.namespaces.includes(name)) this.namespaces.push(name);
  }

  forgetNetns(name: string): void {
    const i = this.namespaces.indexOf(name);
    if (i >= 0) this.namespaces.splice(i, 1);
  }

  addDir(dir: string): void {
    this.dirs.push(dir);
  }

  /** A custom clean-up step; `sync` is what to do when only synchronous work is possible. */
  addHook(fn: () => Promise<void> | void, sync?: () => void): void {
    this.hooks.push(sync ? { async: fn, sync } : { async: fn });
  }

  get trackedNamespaces(): readonly string[] {
    return this.namespaces;
  }

  get trackedPids(): number[] {
    return [...this.processes].map((p) => p.pid);
  }

  /** Graceful clean-up. Collects failures and reports them all at the end. */
  async run(graceMs = 10_000): Promise<void> {
    if (this.done) return;
    const errors: string[] = [];
    await Promise.all([...this.processes].map((p) => p.stop(graceMs)));
    this.processes.clear();
    for (const h of this.hooks.splice(0).reverse()) {
      try {
        await h.async();
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        deleteNetnsSync(ns);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    for (const d of this.dirs.splice(0)) removeDir(d);
    this.done = true;
    liveRegistries.delete(this);
    if (errors.length > 0) throw new TopologyError('E_INTERNAL', `clean-up of ${this.label} incomplete: ${errors.join('; ')}`);
  }

  /** Last-resort clean-up: SIGKILL every process, delete every namespace. Never throws. */
  runSync(): void {
    if (this.done) return;
    this.done = true;
    liveRegistries.delete(this);
    for (const p of this.processes) p.killSync();
    this.processes.clear();
    for (const h of this.hooks.splice(0).reverse()) {
      try {
        h.sync?.();
      } catch {
        // keep going: the namespaces below matter more
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        deleteNetnsSync(ns);
      } catch {
        // nothing more we can do while exiting; removeLeftovers() will retry
      }
    }
    for (const d of this.dirs.splice(0)) {
      try {
        removeDir(d);
      } catch {
        // ditto
      }
    }
  }
}

// ---------------------------------------------------------------------------
// One namespace

export interface NsSpawnOptions {
  logFile: string;
  label?: string;
  env?: NodeJS.ProcessEnv;
  dieWithParent?: boolean;
}

export class Netns {
  private constructor(
    readonly name: string,
    private readonly cleanup: Cleanup,
  ) {}

  /** Creates the namespace, registers it for clean-up and brings `lo` up. */
  static async create(name: string, cleanup: Cleanup): Promise<Netns> {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new TopologyError('E_INTERNAL', `invalid namespace name ${JSON.stringify(name)}`);
    // Registered only once it is ours: if the name was taken, the namespace belongs to someone else.
    await run(['ip', 'netns', 'add', name]);
    cleanup.addNetns(name);
    const ns = new Netns(name, cleanup);
    await ns.ip(['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** `ip -n <ns> ARGS` — the only way this module runs `ip` on links, addresses and routes. */
  ip(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return run(['ip', '-n', this.name, ...args], opts);
  }

  /** Runs a command inside the namespace to completion. */
  exec(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /** Starts a long-running process in the namespace, tracked by PID for clean-up. */
  async spawn(argv: readonly string[], opts: NsSpawnOptions): Promise<ManagedProcess> {
    const p = await ManagedProcess.start(['ip', 'netns', 'exec', this.name, ...argv], {
      logFile: opts.logFile,
      label: opts.label ?? `${argv[0] ?? '?'} in ${this.name}`,
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.dieWithParent === undefined ? {} : { dieWithParent: opts.dieWithParent }),
    });
    this.cleanup.addProcess(p);
    return p;
  }

  /** Sets a sysctl of this namespace (net.* keys are per namespace). */
  async sysctl(key: string, value: string | number): Promise<void> {
    if (!/^[a-z0-9_./-]+$/i.test(key)) throw new TopologyError('E_INTERNAL', `invalid sysctl key ${key}`);
    await this.exec(['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  async sysctlGet(key: string): Promise<string> {
    return (await this.exec(['sysctl', '-n', key])).stdout.trim();
  }

  async linkUp(ifname: string): Promise<void> {
    await this.ip(['link', 'set', checkIfname(ifname), 'up']);
  }

  async addBridge(ifname: string, mtu?: number): Promise<void> {
    await this.ip(['link', 'add', checkIfname(ifname), ...(mtu ? ['mtu', String(mtu)] : []), 'type', 'bridge']);
  }

  async setMaster(ifname: string, bridge: string): Promise<void> {
    await this.ip(['link', 'set', checkIfname(ifname), 'master', checkIfname(bridge)]);
  }

  async setMtu(ifname: string, mtu: number): Promise<void> {
    await this.ip(['link', 'set', checkIfname(ifname), 'mtu', String(mtu)]);
  }

  /** Adds `a.b.c.d/n` to an interface of this namespace. */
  async addAddress(ifname: string, cidr: string): Promise<void> {
    await this.ip(['addr', 'add', cidr, 'dev', checkIfname(ifname)]);
  }

  async addRoute(dest: string, via: string, dev?: string): Promise<void> {
    await this.ip(['route', 'add', dest, 'via', via, ...(dev ? ['dev', checkIfname(dev)] : [])]);
  }

  /** PIDs of every process inside the namespace. */
  async pids(): Promise<number[]> {
    const r = await run(['ip', 'netns', 'pids', this.name]);
    return r.stdout
      .split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number);
  }

  /** Kills what still runs inside, deletes the namespace, and forgets it. */
  async delete(): Promise<void> {
    deleteNetnsSync(this.name);
    this.cleanup.forgetNetns(this.name);
  }
}

export interface VethEnd {
  ns: Netns;
  ifname: string;
}

/**
 * A veth pair between two namespaces, created directly in place (`ip -n A
 * link add X type veth peer name Y netns B`) so it never exists, even for a
 * moment, in the root namespace. Both ends are brought up.
 */
export async function addVethPair(a: VethEnd, b: VethEnd, mtu?: number): Promise<void> {
  await a.ns.ip([
    'link', 'add', checkIfname(a.ifname),
    ...(mtu ? ['mtu', String(mtu)] : []),
    'type', 'veth', 'peer', 'name', checkIfname(b.ifname),
    ...(mtu ? ['mtu', String(mtu)] : []),
    'netns', b.ns.name,
  ]);
  await a.ns.linkUp(a.ifname);
  await b.ns.linkUp(b.ifname);
}
