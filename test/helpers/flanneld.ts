/**
 * The real upstream flanneld (v0.20.2) beside Rudder in the one-machine
 * topology. The binary comes from the anchors (./anchors.ts); without them,
 * tests that need flanneld skip with one line that says what to set.
 *
 * A flannel host is a topology Host whose daemon is flanneld instead of
 * rudder: it writes its own subnet file (FLANNEL_*), from which the host's
 * docker0-like bridge and pod are built exactly as for a Rudder host.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { anchorBinary, have, skipUnlessAnchor } from './anchors';
import { formatCommand, giveUp, parseSubnetEnv, waitUntil, type Cluster, type Host, type ManagedProcess, type SubnetEnv } from '../../src/topology';

/** node:test `skip` reason for suites that run flanneld (false = runnable). */
export const skipUnlessFlanneld: string | false = (() => {
  const why = skipUnlessAnchor('flanneld');
  if (why !== false) return why;
  if (!have('iptables')) return 'needs iptables for flanneld (Debian iptables; ./build installs it)';
  return false;
})();

/** Path of the flanneld binary (test/helpers/anchors.ts finds and unpacks it). */
export function flanneldBinary(): Promise<string> {
  return anchorBinary('flanneld');
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
