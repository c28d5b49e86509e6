/**
 * `node dist/bench/memory.js` (root): where the Rudder daemon's RSS goes
 * (issue 17, item 5). Measurement only; it changes nothing in the daemon.
 *
 *  1. The daemon, idle: one host namespace, real etcd (src/topology; per-run
 *     tag, 198.18.0.0/15, removed however the run ends), backend host-gw by
 *     default, no peers. It runs from bin/rudder as always, with
 *     `NODE_OPTIONS=--require dist/bench/memdump.js`; 5 s after its subnet
 *     file appears it gets SIGUSR2 and dumps process.memoryUsage(), V8's heap
 *     spaces, the RSS split (anon / file / shmem) and require.cache, before
 *     and after one full gc().
 *  2. The floor: fresh node processes with bin/rudder's node flags that only
 *     load something and wait: nothing (`node -e 0`), each package the
 *     daemon loads, and every module the daemon had loaded (from its dump,
 *     required in the same order, nothing run): VmRSS 1.5 s after start,
 *     median of 3.
 * The difference between (2)'s "every module loaded" and (1) is what the
 * daemon's work (etcd connection, leases, netlink sockets, timers) adds.
 * (1) runs --runs times (default 3), each in a fresh cluster; the report
 * gives every run's VmRSS, start-to-ready time (spawn to the subnet file's
 * mtime) and CPU, then the same daemon's VmRSS after a restart on the same
 * host (what a node runs most of the time), and details the median run. --rudder-bin compares another
 * launcher (its own node flags); --no-floor skips (2).
 *
 * Writes bench/results/memory.md (or --out DIR; --no-write prints only).
 *   node dist/bench/memory.js [--backend host-gw] [--settle S] [--runs N] [--rudder-bin PATH] [--no-floor] [--out DIR] [--no-write]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createCluster, sleep } from '../src/topology';
import { repoRoot } from '../src/topology/util';

interface Snapshot {
  memoryUsage: NodeJS.MemoryUsage;
  status: Record<string, number>;
  heapSpaces: Array<{ name: string; size: number; used: number; physical: number }>;
  heapCode: Record<string, number>;
}
interface Dump {
  pid: number;
  execArgv: string[];
  before: Snapshot;
  afterGc: Snapshot | null;
  modules: string[];
}

const MB = 1024 * 1024;
const mb = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? 'n/a' : (x / MB).toFixed(1));


/** bin/rudder's node flags, from its `#!/usr/bin/env -S node ...` line. */
export function launcherFlags(shebang: string): string[] {
  const m = /^#!\S*env -S node(.*)$/m.exec(shebang.split('\n')[0] ?? '');
  return m ? (m[1] as string).trim().split(/\s+/).filter(Boolean) : [];
}

/** Which package (or part of Rudder) a loaded module belongs to. */
export function moduleGroup(file: string, root: string): string {
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '?');
  }
  const rel = path.relative(root, file);
  if (rel.startsWith('..')) return file;
  const parts = rel.split(path.sep);
  // dist/src/<dir>/x.js → rudder src/<dir>; dist/src/x.js → rudder src; native/build → the addon.
  if (parts[0] === 'dist' && parts[1] === 'src') return parts.length > 3 ? `rudder src/${parts[2]}` : 'rudder src';
  if (parts[0] === 'native') return 'rudder native addon';
  return `rudder ${parts[0] ?? rel}`;
}

interface Run {
  outside: Record<string, number>;
  readyMs: number;
  /** The same host's daemon started again (lease, subnet file and host id kept). */
  restarted: Record<string, number>;
  restartReadyMs: number;
  dump: Dump;
}

interface Group {
  name: string;
  files: number;
  bytes: number;
}

export function groupModules(files: readonly string[], root: string, size: (f: string) => number): Group[] {
  const m = new Map<string, Group>();
  for (const f of files) {
    const name = moduleGroup(f, root);
    const g = m.get(name) ?? { name, files: 0, bytes: 0 };
    g.files++;
    g.bytes += size(f);
    m.set(name, g);
  }
  return [...m.values()].sort((a, b) => b.bytes - a.bytes);
}

/** VmRSS and its split from /proc/PID/status, and PSS (shared pages divided among their users) from smaps_rollup. */
function statusOf(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const m of fs.readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB/gm)) out[m[1] as string] = Number(m[2]) * 1024;
    for (const m of fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').matchAll(/^(Pss|Pss_Anon|Pss_File):\s+(\d+) kB/gm)) out[m[1] as string] = Number(m[2]) * 1024;
    // utime + stime (fields 14 and 15, after the parenthesised command), in clock ticks (100 per second on Linux).
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    out.cpuMs = (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    // gone, or no smaps_rollup
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2 : NaN;
};

/** VmRSS (and its split) of a node that runs `code` and waits; median of `n` processes. */
async function floor(flags: string[], code: string, cwd: string, n = 3): Promise<Record<string, number>> {
  const samples: Array<Record<string, number>> = [];
  for (let i = 0; i < n; i++) {
    const child = spawn(process.execPath, [...flags, '-e', `${code};setTimeout(()=>{},1e9)`], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    await sleep(1500);
    const st = child.pid !== undefined ? statusOf(child.pid) : {};
    if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    await new Promise((r) => child.once('exit', r));
    if (!st.VmRSS) throw new Error(`node -e ${JSON.stringify(code.slice(0, 80))}: exited early: ${err.slice(0, 300)}`);
    samples.push(st);
  }
  const keys = Object.keys(samples[0]!);
  return Object.fromEntries(keys.map((k) => [k, median(samples.map((s) => s[k] ?? NaN))]));
}

interface Args {
  backend: string;
  settleS: number;
  runs: number;
  rudderBin: string;
  floor: boolean;
  out: string;
  write: boolean;
}

function parseArgs(argv: string[], root: string): Args {
  const a: Args = { backend: 'host-gw', settleS: 5, runs: 3, rudderBin: path.join(root, 'bin', 'rudder'), floor: true, out: path.join(root, 'bench', 'results'), write: true };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--backend' && v) {
      a.backend = v;
      i++;
    } else if (k === '--settle' && v) {
      a.settleS = Number(v);
      i++;
    } else if (k === '--runs' && v) {
      a.runs = Math.max(1, Number(v));
      i++;
    } else if (k === '--rudder-bin' && v) {
      a.rudderBin = path.resolve(v);
      i++;
    } else if (k === '--no-floor') a.floor = false;
    else if (k === '--out' && v) {
      a.out = path.resolve(v);
      i++;
    } else if (k === '--no-write') a.write = false;
    else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: node dist/bench/memory.js [--backend host-gw] [--settle S] [--runs N] [--rudder-bin PATH] [--no-floor] [--out DIR] [--no-write]   (as root)\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

async function main(): Promise<void> {
  const root = repoRoot();
  const a = parseArgs(process.argv.slice(2), root);
  if (process.getuid?.() !== 0) throw new Error('the daemon runs in a network namespace: run as root');
  const log = (s: string): void => void process.stderr.write(`memory: ${s}\n`);
  const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const flags = launcherFlags(fs.readFileSync(a.rudderBin, 'utf8'));
  const memdump = path.join(root, 'dist', 'bench', 'memdump.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-memory-'));

  // 1. The idle daemon, --runs times, each in a fresh cluster.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) env[k] = v;
  env.NODE_OPTIONS = `--require ${memdump}`;
  const runs: Run[] = [];
  for (let run = 0; run < a.runs; run++) {
    const dumpFile = path.join(dir, `dump-${run}.json`);
    env.BENCH_MEMDUMP_FILE = dumpFile;
    const c = await createCluster({ hosts: 1, prefix: 'rdm', sweepLeftovers: true, rudderEnv: { ...env }, rudderBin: a.rudderBin });
    try {
      await c.putConfig({ Network: '10.70.0.0/16', Backend: { Type: a.backend } });
      const h = c.host(1);
      const t0 = Date.now();
      const p = await h.startRudder();
      await h.waitSubnetFile();
      const readyMs = (h.subnetFileStamp()?.mtimeMs ?? NaN) - t0;
      log(`run ${run + 1}/${a.runs}: daemon up (pid ${p.pid}, ready in ${readyMs.toFixed(0)} ms); settling ${a.settleS} s`);
      await sleep(a.settleS * 1000);
      const outside = statusOf(p.pid);
      process.kill(p.pid, 'SIGUSR2');
      for (let i = 0; i < 50 && !fs.existsSync(dumpFile); i++) await sleep(100);
      const dump = JSON.parse(fs.readFileSync(dumpFile, 'utf8')) as Dump;
      // The same host restarted: it finds its lease, subnet file and host id (the steady state of a node).
      const stamp = h.subnetFileStamp();
      await h.stopRudder();
      const t1 = Date.now();
      const p2 = await h.startRudder();
      await h.waitSubnetFile({ changedSince: stamp });
      const restartReadyMs = (h.subnetFileStamp()?.mtimeMs ?? NaN) - t1;
      await sleep(a.settleS * 1000);
      const restarted = statusOf(p2.pid);
      log(`run ${run + 1}/${a.runs}: first start ${mb(outside.VmRSS)} MB, restarted ${mb(restarted.VmRSS)} MB (ready in ${restartReadyMs.toFixed(0)} ms)`);
      runs.push({ outside, readyMs, restarted, restartReadyMs, dump });
    } finally {
      await c.teardown();
    }
  }
  const byRss = [...runs].sort((x, y) => (x.outside.VmRSS ?? 0) - (y.outside.VmRSS ?? 0));
  const { dump, outside } = byRss[(byRss.length - 1) >> 1] as Run;

  // 2. The floor: bare node, each package, every module the daemon loaded.
  const groups = groupModules(dump.modules, root, (f) => fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0);
  const packages = groups.filter((g) => !g.name.startsWith('rudder') && !g.name.startsWith('/')).map((g) => g.name);
  const ladder: Array<{ what: string; code: string }> = [
    { what: '`node -e 0` (bin/rudder\'s flags)', code: '0' },
    // Each package as the daemon loaded it: its files from the dump (src/netlink imports parts of `netlink`, not its index).
    ...packages.map((p) => {
      const files = dump.modules.filter((f) => moduleGroup(f, root) === p && f.endsWith('.js'));
      return { what: `${p} (the ${files.length} files the daemon loaded)`, code: `for (const f of ${JSON.stringify(files)}) require(f)` };
    }),
    { what: "`require('node:http')` (what the etcd client is built on)", code: "require('node:http')" },
    { what: "node:http and node:child_process (`nft`, at every start)", code: "require('node:http'); require('node:child_process')" },
    { what: 'and node:crypto (the host id, first start only)', code: "require('node:http'); require('node:child_process'); require('node:crypto')" },
    { what: 'rudder src/etcd/client (the etcd client, node:http included)', code: `require(${JSON.stringify(path.join(root, 'dist', 'src', 'etcd', 'client.js'))})` },
    { what: `every module the daemon loaded (${dump.modules.length}), nothing run`, code: `for (const f of ${JSON.stringify(dump.modules)}) require(f)` },
  ];
  const floors: Array<{ what: string; st: Record<string, number> }> = [];
  for (const l of a.floor ? ladder : []) {
    log(`floor: ${l.what}`);
    floors.push({ what: l.what, st: await floor(flags, l.code, root) });
  }
  fs.rmSync(dir, { recursive: true, force: true });

  const loadAfter = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const md = report({ a, flags, runs, dump, outside, groups, floors, loadBefore, loadAfter });
  process.stdout.write(md);
  if (a.write) {
    fs.mkdirSync(a.out, { recursive: true });
    fs.writeFileSync(path.join(a.out, 'memory.md'), md);
    log(`wrote ${path.join(a.out, 'memory.md')}`);
  }
}

function report(r: {
  a: Args;
  flags: string[];
  runs: Run[];
  dump: Dump;
  outside: Record<string, number>;
  groups: Group[];
  floors: Array<{ what: string; st: Record<string, number> }>;
  loadBefore: string;
  loadAfter: string;
}): string {
  const o: string[] = [];
  const { dump } = r;
  const b = dump.before;
  const g = dump.afterGc;
  const bare = r.floors[0]?.st.VmRSS ?? NaN;
  o.push('# Where the daemon\'s memory goes');
  o.push('');
  o.push(`Measured ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} by \`node dist/bench/memory.js\` (as root; bench/memory.ts says how): kernel ${os.release()}, node ${process.version}, ` +
    `${os.cpus().length} CPUs, load average ${r.loadBefore} before / ${r.loadAfter} after (a shared machine: RSS moves by a few MB between runs). ` +
    `The daemon: backend ${r.a.backend}, one host, real etcd, no peers, ${r.a.settleS} s after its subnet file; node flags ${r.flags.join(' ')}.`);
  o.push('');
  o.push('## The idle daemon');
  o.push('');
  const rss = r.runs.map((x) => x.outside.VmRSS ?? NaN);
  const ready = r.runs.map((x) => x.readyMs);
  const cpu = r.runs.map((x) => x.outside.cpuMs ?? NaN);
  o.push(`${r.runs.length} starts, each in a fresh cluster: VmRSS ${rss.map(mb).join(', ')} MB (median ${mb(median(rss))}); ` +
    `start to ready (spawn to the subnet file) ${ready.map((x) => x.toFixed(0)).join(', ')} ms (median ${median(ready).toFixed(0)}); ` +
    `CPU (utime + stime) from start to the dump ${cpu.map((x) => x.toFixed(0)).join(', ')} ms (median ${median(cpu).toFixed(0)}). ` +
    `Each then restarted on the same host (its lease, subnet file and host id kept, the steady state of a node): VmRSS ${r.runs.map((x) => mb(x.restarted.VmRSS)).join(', ')} MB ` +
    `(median ${mb(median(r.runs.map((x) => x.restarted.VmRSS ?? NaN)))}), ready in ${r.runs.map((x) => x.restartReadyMs.toFixed(0)).join(', ')} ms. The table is the median first start.`);
  o.push('');
  o.push('| | MB |');
  o.push('|---|---:|');
  o.push(`| VmRSS (from /proc, before the dump) | ${mb(r.outside.VmRSS)} |`);
  o.push(`| of which anonymous (heaps, malloc) | ${mb(r.outside.RssAnon)} |`);
  o.push(`| of which file-backed (the node binary's pages, the .node addons) | ${mb(r.outside.RssFile)} |`);
  o.push(`| PSS (shared pages divided among the processes mapping them) / of which file-backed | ${mb(r.outside.Pss)} / ${mb(r.outside.Pss_File)} |`);
  o.push(`| V8 heap used / total (before gc) | ${mb(b.memoryUsage.heapUsed)} / ${mb(b.memoryUsage.heapTotal)} |`);
  if (g) o.push(`| V8 heap used / total (after one full gc) | ${mb(g.memoryUsage.heapUsed)} / ${mb(g.memoryUsage.heapTotal)} |`);
  o.push(`| external / of which arrayBuffers | ${mb(b.memoryUsage.external)} / ${mb(b.memoryUsage.arrayBuffers)} |`);
  o.push(`| RSS outside V8's heap (VmRSS − heap total − external) | ${mb((r.outside.VmRSS ?? NaN) - b.memoryUsage.heapTotal - b.memoryUsage.external)} |`);
  o.push(`| V8 code (bytecode and compiled code, in the heap) | ${mb((b.heapCode.code_and_metadata_size ?? 0) + (b.heapCode.bytecode_and_metadata_size ?? 0))} |`);
  o.push('');
  o.push('V8 heap spaces (before gc; used / physical MB): ' + b.heapSpaces.filter((s) => s.physical > 0).map((s) => `${s.name} ${mb(s.used)} / ${mb(s.physical)}`).join(', ') + '.');
  o.push('');
  if (r.floors.length > 0) {
    o.push('## The floor: node processes that only load code');
    o.push('');
    o.push('| loaded (nothing run), same node flags | VmRSS MB | over bare node | anon / file MB |');
    o.push('|---|---:|---:|---:|');
    for (const f of r.floors) o.push(`| ${f.what} | ${mb(f.st.VmRSS)} | ${f === r.floors[0] ? '—' : `+${mb((f.st.VmRSS ?? NaN) - bare)}`} | ${mb(f.st.RssAnon)} / ${mb(f.st.RssFile)} |`);
    const all = r.floors[r.floors.length - 1]?.st.VmRSS ?? NaN;
    const builtins = r.floors.find((f) => f.what.includes('node:crypto'))?.st.VmRSS ?? NaN;
    o.push(`| the daemon itself, idle | ${mb(r.outside.VmRSS)} | +${mb((r.outside.VmRSS ?? NaN) - bare)} | ${mb(r.outside.RssAnon)} / ${mb(r.outside.RssFile)} |`);
    o.push('');
    o.push(`So of the idle daemon's ${mb(r.outside.VmRSS)} MB: bare node ${mb(bare)} MB, loading its code ${mb(all - bare)} MB (node's built-ins ${mb(builtins - bare)}, Rudder's own modules and addon ${mb(all - builtins)}), running (etcd connection, lease, netlink, timers, heap grown by the start) ${mb((r.outside.VmRSS ?? NaN) - all)} MB. ` +
      'The per-package rows each load one package alone: they overlap (shared dependencies), so they do not add up to the "every module" row. ' +
      'File-backed RSS is mostly the node binary\'s own pages: counted in full in every node process\'s RSS, shared among them in memory (PSS above). ' +
      'The node flags, and the ones measured and left, are in docs/architecture.md (the etcd client\'s memory paragraph).');
    o.push('');
  }
  o.push('## Modules the daemon loaded');
  o.push('');
  o.push(`${dump.modules.length} files in require.cache, by package (source bytes on disk, a proxy for the code V8 parses and keeps):`);
  o.push('');
  o.push('| package / part | files | source KB |');
  o.push('|---|---:|---:|');
  for (const x of r.groups) o.push(`| ${x.name} | ${x.files} | ${Math.round(x.bytes / 1024)} |`);
  o.push('');
  o.push('Every file, largest first (KB on disk):');
  o.push('');
  const files = dump.modules.map((f) => ({ f: path.relative(repoRoot(), f), kb: (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0) / 1024 }));
  o.push(files.sort((x, y) => y.kb - x.kb).map((x) => `${x.f} ${x.kb.toFixed(0)}`).join(', ') + '.');
  o.push('');
  return o.join('\n') + '\n';
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`memory: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
