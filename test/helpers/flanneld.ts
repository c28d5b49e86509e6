/**
 * The real upstream flanneld (v0.20.2) beside Rudder in the one-machine
 * topology. Finding the binary lives here and nowhere else: the project's
 * anchors sit in `../shared/anchors` beside the checkout (CI has them), and
 * `RUDDER_TEST_ANCHORS=DIR` points at a directory that already holds an
 * unpacked `flanneld` instead. Without either, tests that need flanneld skip
 * with one line that says what to set.
 *
 * A flannel host is a topology Host whose daemon is flanneld instead of
 * rudder: it writes its own subnet file (FLANNEL_*), from which the host's
 * docker0-like bridge and pod are built exactly as for a Rudder host.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatCommand, giveUp, parseSubnetEnv, run, waitUntil, type Cluster, type Host, type ManagedProcess, type SubnetEnv } from '../../src/topology';

const ANCHORS_ENV = 'RUDDER_TEST_ANCHORS';

function repoRoot(): string {
  // Compiled to dist/test/helpers/flanneld.js: walk up to the checkout (package.json beside bin/).
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', '..');
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Where the anchors come from: an unpacked directory, or the packed anchors and their `unpack` script. */
type Source = { kind: 'dir'; dir: string } | { kind: 'packed'; unpack: string } | { kind: 'missing' };

function source(): Source {
  const dir = process.env[ANCHORS_ENV];
  if (dir !== undefined && dir !== '') return { kind: 'dir', dir: path.resolve(dir) };
  const unpack = path.resolve(repoRoot(), '..', 'shared', 'anchors', 'unpack');
  return fs.existsSync(unpack) ? { kind: 'packed', unpack } : { kind: 'missing' };
}

/** node:test `skip` reason for suites that run flanneld (false = runnable). */
export const skipUnlessFlanneld: string | false = (() => {
  const s = source();
  if (s.kind === 'missing') {
    return `needs upstream flanneld: set ${ANCHORS_ENV}=DIR holding flanneld and kube-apiserver (or put the anchors at ../shared/anchors)`;
  }
  if (s.kind === 'packed' && !have('xz')) return 'needs xz to unpack ../shared/anchors (Debian xz-utils; ./build installs it)';
  if (!have('iptables')) return 'needs iptables for flanneld (Debian iptables; ./build installs it)';
  return false;
})();

let unpacked: Promise<string> | null = null;

/**
 * Path of the flanneld binary, unpacked once per run into a cache directory
 * (the unpack script checks the sha256 and skips what is already there;
 * flock keeps two concurrent runs from writing the same file).
 */
export function flanneldBinary(): Promise<string> {
  unpacked ??= (async () => {
    const s = source();
    if (s.kind === 'missing') throw new Error(`no anchors: set ${ANCHORS_ENV}=DIR holding flanneld`);
    if (s.kind === 'dir') {
      const bin = path.join(s.dir, 'flanneld');
      if (!fs.existsSync(bin)) throw new Error(`${ANCHORS_ENV}=${s.dir}: no flanneld there`);
      return bin;
    }
    const cache = path.join(os.tmpdir(), `rudder-anchors-${process.getuid?.() ?? 'u'}`);
    fs.mkdirSync(cache, { recursive: true });
    const r = await run(['flock', path.join(cache, '.lock'), 'bash', s.unpack, cache]);
    const bin = path.join(r.stdout.trim() || cache, 'flanneld');
    if (!fs.existsSync(bin)) throw new Error(`${s.unpack} ${cache} wrote no flanneld`);
    return bin;
  })();
  return unpacked;
}

/** Reads flannel's subnet file (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ) in the harness's shape. */
export function parseFlannelSubnetEnv(text: string, source: string): SubnetEnv {
  const renamed = text.replace(/^(\s*)FLANNEL_/gm, '$1RUDDER_');
  const env = parseSubnetEnv(renamed, source);
  const raw: Record<string, string> = {};
  for (const [k, v] of Object.entries(env.raw)) raw[k.replace(/^RUDDER_/, 'FLANNEL_')] = v;
  return { ...env, raw };
}

/** flanneld on one host of a cluster, started and stopped by PID. */
export class Flanneld {
  proc: ManagedProcess | null = null;

  constructor(
    readonly cluster: Cluster,
    readonly host: Host,
    readonly bin: string,
  ) {}

  get subnetFile(): string {
    return path.join(this.host.dir, 'flannel-subnet.env');
  }

  get logFile(): string {
    return path.join(this.host.dir, 'flanneld.log');
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  argv(): string[] {
    return [
      this.bin,
      `-etcd-endpoints=${this.cluster.etcdEndpoints.join(',')}`,
      `-etcd-prefix=${this.cluster.etcdPrefix}`,
      '-iface=eth0',
      `-subnet-file=${this.subnetFile}`,
    ];
  }

  async start(): Promise<ManagedProcess> {
    if (this.proc?.running) throw new Error(`flanneld on ${this.host.name} already runs (pid ${this.proc.pid})`);
    const argv = this.argv();
    fs.appendFileSync(this.logFile, `--- harness: starting ${formatCommand(argv)} in ${this.host.ns.name} at ${new Date().toISOString()}\n`);
    // Its environment without FLANNELD_* (flanneld reads flags from there too).
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLANNELD_')) env[k] = v;
    this.proc = await this.host.ns.spawn(argv, { logFile: this.logFile, label: `flanneld ${this.host.name}`, env });
    return this.proc;
  }

  /**
   * SIGTERM, SIGKILL after the grace. Its exit status is not looked at:
   * flanneld panics on shutdown now and then.
   */
  async stop(graceMs = 10_000): Promise<void> {
    await this.proc?.stop(graceMs);
  }

  readSubnetFile(): SubnetEnv | null {
    let text: string;
    try {
      text = fs.readFileSync(this.subnetFile, 'utf8');
    } catch {
      return null;
    }
    return parseFlannelSubnetEnv(text, this.subnetFile);
  }

  log(maxBytes = 4000): string {
    return this.proc?.logTail(maxBytes) ?? '';
  }

  /** Waits for flanneld's subnet file; fails at once, with the log, if flanneld exits first. */
  async waitSubnetFile(): Promise<SubnetEnv> {
    return waitUntil(
      () => {
        if (this.proc && !this.proc.running) giveUp(new Error(`flanneld on ${this.host.name} exited before writing ${this.subnetFile}:\n${this.log()}`));
        return this.readSubnetFile() ?? undefined;
      },
      { giveUpMs: this.cluster.giveUpMs, intervalMs: 100, what: `${this.subnetFile} (flanneld on ${this.host.name}; log ${this.logFile})` },
    );
  }

  /** Start flanneld, wait for its subnet file, build the bridge and pod from it. */
  async up(): Promise<SubnetEnv> {
    await this.start();
    const env = await this.waitSubnetFile();
    await this.host.setupPod(env);
    return env;
  }
}
