/**
 * `rudder sandbox`: a whole Rudder cluster on this machine, built with the
 * shared one-machine topology (src/topology) — etcd in its namespace, N hosts
 * on an underlay bridge, one daemon per host, one pod per host behind a
 * docker0-like bridge made from the host's subnet file.
 *
 * Life cycle:
 *  - checks first (root, tools, /dev/net/tun, the backend, the name), so a
 *    machine that cannot run it gets one clear line instead of a stack;
 *  - sweeps leftovers of sandboxes that were killed (removeLeftovers);
 *  - builds step by step, showing progress;
 *  - then either a live table (until Ctrl-C / SIGTERM) or, with --check,
 *    one verified table and an exit status;
 *  - removes everything it made however it ends: the topology's Cleanup
 *    registry handles signals and process exit (SIGKILL included: the
 *    daemons die with us and the next start sweeps the namespaces).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeError } from '../errors';
import { formatCidr, formatIp, maskOf, parseCidr } from '../ip/ipv4';
import { formatCidr6, formatIp6, maskOf6, parseCidr6, parseIp6 } from '../ip/ipv6';
import { hasIpv4, parseLeaseKey } from '../subnet/lease';
import {
  UNDERLAY_NETWORK_V6,
  createCluster,
  liveRuns,
  removeLeftovers,
  sleep,
  type Cluster,
  type Host,
} from '../topology';
import { sandboxConfig, sandboxFamilies, sandboxFlags, sandboxUsage, type Family, type SandboxFlags } from './flags';
import { createProgress, type Progress } from './progress';
import { failingPairs, pairCount, podAddress, renderSnapshot, type HostStatus, type Matrix, type Snapshot } from './table';

const KEEP_HINT =
  process.env.RUDDER_KEEP_TMP === '1'
    ? 'rudder sandbox: the logs are kept (RUDDER_KEEP_TMP=1); remove the directory when done'
    : 'rudder sandbox: the logs are removed with the sandbox; to keep them, run it again as: sudo RUDDER_KEEP_TMP=1 bin/rudder sandbox ...';

/** Pings running at once while measuring the matrix. */
const PING_CONCURRENCY = 12;

export interface SandboxIo {
  out: NodeJS.WriteStream;
  err: (line: string) => void;
}

class SandboxError extends Error {}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v "$1"`, 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

/** Everything that would make the sandbox fail half-way, found before anything is made. */
export async function preflight(f: SandboxFlags): Promise<string[]> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) {
    problems.push('must run as root: it creates network namespaces, bridges and TUN devices (try: sudo bin/rudder sandbox)');
  }
  const tools: Array<[string, string]> = [
    ['etcd', 'etcd not found: ./build installs it (Debian package etcd-server)'],
    ['etcdctl', 'etcdctl not found: ./build installs it (Debian package etcd-client)'],
    ['ip', 'ip not found: ./build installs it (Debian package iproute2)'],
    ['ping', 'ping not found: ./build installs it (Debian package iputils-ping)'],
    ['sysctl', 'sysctl not found: ./build installs it (Debian package procps)'],
    ['setpriv', 'setpriv not found (Debian package util-linux)'],
  ];
  for (const [cmd, msg] of tools) if (!have(cmd)) problems.push(msg);
  if (f.backend === 'udp') {
    const st = fs.statSync('/dev/net/tun', { throwIfNoEntry: false });
    if (!st || !st.isCharacterDevice()) {
      problems.push('no /dev/net/tun: the udp backend needs TUN devices (try: modprobe tun; in a container: --device /dev/net/tun), or use --backend vxlan');
    }
  }
  if (f.rudderBin !== undefined) {
    try {
      fs.accessSync(f.rudderBin, fs.constants.X_OK);
    } catch {
      problems.push(`--rudder-bin=${f.rudderBin}: not an executable file`);
    }
  }
  try {
    const { availableBackends } = await import('../backend');
    const have = availableBackends();
    if (!have.includes(f.backend)) problems.push(`backend ${f.backend} is not available in this build (available: ${have.join(', ')})`);
  } catch (e) {
    problems.push(`cannot load the backends: ${describeError(e)} (run ./build)`);
  }
  try {
    const taken = liveRuns(f.name).filter((r) => r.pid !== process.pid);
    for (const r of taken) {
      problems.push(
        `the name ${JSON.stringify(f.name)} is taken: a sandbox is running as ${r.run} (pid ${r.pid}, namespaces ${r.run}-*); stop it (Ctrl-C in its terminal, or kill ${r.pid}) or pick another --name`,
      );
    }
  } catch (e) {
    problems.push(`cannot read the run markers: ${describeError(e)}`);
  }
  return problems;
}

/** The lease behind RUDDER_SUBNET: 10.0.5.1/24 → 10.0.5.0/24. */
function leaseOf(subnetEnv: string): string | null {
  const c = parseCidr(subnetEnv);
  return c ? formatCidr({ ip: (c.ip & maskOf(c.prefix)) >>> 0, prefix: c.prefix }) : null;
}

/** The IPv6 lease behind RUDDER_IPV6_SUBNET: fd10:0:0:5::1/64 → fd10:0:0:5::/64. */
function lease6Of(subnetEnv: string): string | null {
  const c = parseCidr6(subnetEnv);
  return c ? formatCidr6({ ip: c.ip & maskOf6(c.prefix), prefix: c.prefix }) : null;
}

/** A lease as the sandbox shows it, from etcd's key and value. */
interface ShownLease {
  subnet: string | null;
  ipv6Subnet: string | null;
  publicIpv6: string | null;
  backend: string;
}

async function pool<T>(jobs: Array<() => Promise<T>>, width: number): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await (jobs[i] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker));
  return out;
}

function exitText(h: Host): string | null {
  const ex = h.rudder?.exit;
  if (!ex) return null;
  return ex.signal ? `signal ${ex.signal}` : `status ${ex.code}`;
}

/**
 * One look at the cluster: etcd's leases, daemons, pods, and one ping per
 * ordered pod pair and family.
 */
export async function snapshot(c: Cluster, families: readonly Family[] = ['ipv4']): Promise<Snapshot> {
  const v6 = families.includes('ipv6');
  let etcdError: string | null = null;
  // Leases by PublicIP and by PublicIPv6 (an IPv6-only host may publish only the latter).
  const byIp = new Map<string, ShownLease>();
  try {
    for (const l of await c.listSubnets()) {
      // listSubnets turns the key's last '-' into '/': undo that to read flannel's key form.
      const k = parseLeaseKey(l.subnet.replace(/\/(\d+)$/, '-$1'));
      const shown: ShownLease = {
        subnet: k ? (hasIpv4(k) ? formatCidr(k.subnet) : null) : l.subnet,
        ipv6Subnet: k?.ipv6Subnet ? formatCidr6(k.ipv6Subnet) : null,
        publicIpv6: typeof l.value.PublicIPv6 === 'string' ? l.value.PublicIPv6 : null,
        backend: typeof l.value.BackendType === 'string' ? l.value.BackendType : '?',
      };
      if (typeof l.value.PublicIP === 'string' && l.value.PublicIP !== formatIp(0)) byIp.set(l.value.PublicIP, shown);
      if (shown.publicIpv6 !== null) byIp.set(normal6(shown.publicIpv6), shown);
    }
  } catch (e) {
    etcdError = `cannot list leases: ${describeError(e).split('\n')[0]}`;
  }
  const hosts: HostStatus[] = c.hosts.map((h) => {
    const lease = byIp.get(h.underlayIp) ?? (v6 ? byIp.get(normal6(h.underlayIpv6)) : undefined);
    let fileSubnet: string | null = null;
    let fileSubnet6: string | null = null;
    try {
      const env = h.readSubnetFile();
      fileSubnet = env && env.ipv4 !== false ? leaseOf(env.subnet) : null;
      fileSubnet6 = env?.ipv6Subnet !== undefined ? lease6Of(env.ipv6Subnet) : null;
    } catch {
      fileSubnet = null;
    }
    return {
      name: h.name,
      underlayIp: h.underlayIp,
      publicIp: lease ? h.underlayIp : null,
      subnet: lease ? lease.subnet : fileSubnet,
      backend: lease?.backend ?? null,
      daemon: { running: h.rudder?.running ?? false, pid: h.rudder?.pid ?? null, exit: exitText(h) },
      podNs: h.pod?.ns.name ?? null,
      podIp: h.pod?.ipv4 ?? null,
      ...(v6
        ? {
            publicIpv6: lease?.publicIpv6 ?? null,
            ipv6Subnet: lease ? lease.ipv6Subnet : fileSubnet6,
            podIpv6: h.pod?.ipv6 ?? null,
          }
        : {}),
    };
  });
  const empty = (): Matrix => c.hosts.map(() => c.hosts.map(() => null));
  const matrices: Record<Family, Matrix> = { ipv4: empty(), ipv6: empty() };
  const jobs: Array<() => Promise<void>> = [];
  for (const f of families) {
    c.hosts.forEach((a, i) =>
      c.hosts.forEach((b, j) => {
        const from = a.pod;
        const to = podAddress(hosts[j] as HostStatus, f);
        if (i === j || !from || !b.pod || to === null) return;
        jobs.push(async () => {
          const row = matrices[f][i] as Array<number | null>;
          try {
            const r = await from.ping(to, { count: 1, intervalS: 0.2, replyWaitS: 1 });
            const reply = r.replies[0];
            row[j] = r.received > 0 && reply ? reply.timeMs : null;
          } catch {
            row[j] = null;
          }
        });
      }),
    );
  }
  await pool(jobs, PING_CONCURRENCY);
  return { hosts, families, matrix: matrices.ipv4, ...(v6 ? { matrix6: matrices.ipv6 } : {}), etcdError };
}

/** An IPv6 address in its canonical text, so two spellings compare equal. */
function normal6(s: string): string {
  const ip = parseIp6(s);
  return ip === null ? s : formatIp6(ip);
}

function deviceHint(backend: string): string {
  switch (backend) {
    case 'udp':
      return 'ip route; ip addr show rudder0';
    case 'vxlan':
      return 'ip route; ip -d link show rudder.1; bridge fdb show dev rudder.1';
    default:
      return 'ip route';
  }
}

/** How to look around: step into a pod or host, read leases and logs. */
export function hints(c: Cluster, f: SandboxFlags): string[] {
  const h1 = c.hosts[0];
  const lines: string[] = [];
  if (!h1) return lines;
  const other = c.hosts[1]?.pod?.ip;
  const pad = (s: string): string => s.padEnd(20);
  lines.push(`${pad('Step into a pod:')}sudo ip netns exec ${h1.pod?.ns.name ?? c.tag.name('p1')} bash${other ? `    (then: ping ${other})` : ''}`);
  lines.push(`${pad('Step into a host:')}sudo ip netns exec ${h1.ns.name} bash    (then: ${deviceHint(f.backend)})`);
  lines.push(`${pad('Leases in etcd:')}sudo ip netns exec ${h1.ns.name} ${process.argv[1] ? path.resolve(process.argv[1]) : c.rudderBin} -etcd-endpoint=${c.etcdEndpoints.join(',')} leases`);
  lines.push('Daemon logs:');
  for (const h of c.hosts) lines.push(`  ${h.name}  ${h.logFile}`);
  lines.push(`etcd log: ${c.etcd.logFile ?? '(none)'}`);
  return lines;
}

function header(c: Cluster, f: SandboxFlags): string {
  const net = f.ipv6Only ? `IPv6-only network ${f.ipv6Network}` : f.ipv6 ? `network ${f.network} and ${f.ipv6Network}` : `network ${f.network}`;
  const underlay = f.ipv6 || f.ipv6Only ? `underlay 198.18.0.0/15 and ${UNDERLAY_NETWORK_V6}` : 'underlay 198.18.0.0/15';
  return `Rudder sandbox ${c.tag.name('*')}: ${c.hosts.length} host(s), backend ${f.backend}, ${net}, ${underlay}, etcd ${c.etcdEndpoints.join(',')}`;
}

/** Waits until every ordered pod pair answers, or the give-up passes; returns the last snapshot. */
async function waitMesh(c: Cluster, families: readonly Family[], giveUpMs: number, stopped: () => boolean): Promise<Snapshot> {
  const deadline = Date.now() + giveUpMs;
  for (;;) {
    const s = await snapshot(c, families);
    if (failingPairs(s).length === 0 || Date.now() >= deadline || stopped()) return s;
    if (s.hosts.some((h) => !h.daemon.running)) return s; // a dead daemon will not come back
    await sleep(500);
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15;
}

export async function runSandbox(argv: readonly string[], io: SandboxIo): Promise<number> {
  let f: SandboxFlags;
  try {
    f = sandboxFlags(argv);
  } catch (e) {
    io.err(`rudder sandbox: ${describeError(e)}`);
    io.err('');
    io.err(sandboxUsage());
    return 2;
  }
  if (f.help) {
    io.out.write(sandboxUsage());
    return 0;
  }
  const families = sandboxFamilies(f);
  const problems = await preflight(f);
  if (problems.length > 0) {
    for (const p of problems) io.err(`rudder sandbox: ${p}`);
    return 1;
  }

  const out = io.out;
  // A reader that went away (`| head`) must not crash the run before it cleans up.
  out.on('error', () => undefined);
  const tty = out.isTTY === true && !f.check;
  const progress: Progress = createProgress(out, out.isTTY === true);
  const swept = removeLeftovers(f.name);
  if (swept.namespaces.length > 0 || swept.dirs.length > 0) {
    progress.note(`removed leftovers of an earlier sandbox that did not clean up: ${[...swept.namespaces, ...swept.dirs].join(' ')}`);
  }

  // Signals: the topology's Cleanup registry reacts to them too (synchronously:
  // SIGKILL by PID, namespaces deleted). This handler only stops our flow,
  // reports, and makes sure nothing that was being created at that moment stays.
  let stopSignal: NodeJS.Signals | null = null;
  let wake: () => void = () => undefined;
  const stoppedP = new Promise<'stopped'>((resolve) => {
    wake = () => resolve('stopped');
  });
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopSignal) {
      io.err('rudder sandbox: still cleaning up');
      return;
    }
    stopSignal = sig;
    progress.stop();
    if (tty) out.write('\x1b[?25h');
    out.write(`\n${sig}: stopping; removing namespaces, devices, processes and temp files ...\n`);
    wake();
  };
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of sigs) process.on(s, onSignal);

  let cluster: Cluster | null = null;
  const finish = async (code: number): Promise<number> => {
    try {
      if (cluster) await cluster.teardown();
    } catch (e) {
      io.err(`rudder sandbox: clean-up: ${describeError(e)}`);
      code = code || 1;
    }
    // Anything of ours created while a signal was being handled (our run marker is gone by now, so it counts as a leftover).
    const late = removeLeftovers(f.name);
    if (late.namespaces.length > 0) io.err(`rudder sandbox: removed late namespaces: ${late.namespaces.join(' ')}`);
    for (const s of sigs) process.off(s, onSignal);
    if (stopSignal) {
      out.write('stopped; everything the sandbox made is removed.\n');
      return 128 + signalNumber(stopSignal);
    }
    return code;
  };

  const setup = (async (): Promise<Cluster> => {
    const c = await progress.step('underlay switch and etcd (198.18.0.250:2379)', () =>
      createCluster({
        hosts: 0,
        prefix: f.name,
        etcdMembers: 1,
        // IPv6: a dual-stack underlay (2001:2::N beside 198.18.0.N) and pods with IPv6 addresses.
        ...(f.ipv6 || f.ipv6Only ? { ipv6: true } : {}),
        rudderArgs: f.v > 0 ? [`-v=${f.v}`] : [],
        ...(f.rudderBin ? { rudderBin: path.resolve(f.rudderBin) } : {}),
      }),
    );
    cluster = c;
    if (stopSignal) return c;
    progress.note(`namespaces: ${c.tag.name('*')}; files: ${c.dir}`);
    await progress.step(`${f.hosts} host namespace(s) on the underlay (198.18.0.1${f.hosts > 1 ? `-${f.hosts}` : ''})`, async () => {
      for (let i = 0; i < f.hosts && !stopSignal; i++) {
        const h = await c.addHost();
        // The hosts share one file system: each needs its own WireGuard key.
        if (f.backend === 'wireguard') h.rudderArgs.push(`-wireguard-key-file=${path.join(h.dir, 'wireguard.key')}`);
      }
    });
    if (stopSignal) return c;
    const config = sandboxConfig(f);
    await progress.step(`network config ${JSON.stringify(config)}`, () => c.putConfig(config));
    await progress.step(`${f.hosts} rudder daemon(s); waiting for their subnet files`, async () => {
      await Promise.all(c.hosts.map((h) => h.startRudder()));
      await Promise.all(c.hosts.map((h) => h.waitSubnetFile()));
    });
    if (stopSignal) return c;
    await progress.step('one pod per host behind a docker0-like bridge (rbr0) built from subnet.env', async () => {
      for (const h of c.hosts) {
        if (stopSignal) break;
        const env = h.readSubnetFile();
        if (!env) throw new SandboxError(`${h.name}: subnet file ${h.subnetFile} vanished`);
        await h.setupPod(env);
      }
    });
    return c;
  })();
  setup.catch(() => undefined); // handled below; never an unhandled rejection

  let c: Cluster;
  try {
    const first = await Promise.race([setup, stoppedP]);
    if (first === 'stopped') {
      // Let the build notice that its namespaces are gone (bounded: it fails fast once they are).
      await Promise.race([setup.catch(() => undefined), sleep(5000)]);
      return await finish(130);
    }
    c = first;
  } catch (e) {
    if (stopSignal) return finish(130);
    progress.stop();
    io.err(`rudder sandbox: setup failed: ${describeError(e)}`);
    io.err(KEEP_HINT);
    return finish(1);
  }

  if (f.check) {
    const s = await progress.step('every pod reaching every other pod', () => waitMesh(c, families, f.giveUpMs, () => stopSignal !== null));
    if (stopSignal) return finish(130);
    out.write('\n' + header(c, f) + '\n\n' + renderSnapshot(s).join('\n') + '\n\n');
    const bad = failingPairs(s);
    if (bad.length > 0) {
      io.err(`rudder sandbox: check FAILED: ${bad.length} of ${pairCount(s)} pod pairs unreachable:`);
      for (const p of bad) {
        const over = families.length > 1 ? ` over ${p.family === 'ipv4' ? 'IPv4' : 'IPv6'}` : '';
        io.err(`  ${p.from.name} (${podAddress(p.from, p.family) ?? '-'}) → ${p.to.name} (${podAddress(p.to, p.family) ?? '-'})${over}`);
      }
      for (const h of c.hosts) {
        if (!h.rudder?.running || bad.some((p) => p.from.name === h.name || p.to.name === h.name)) {
          io.err(`--- ${h.name}: ${h.logFile} (last lines)`);
          io.err(h.rudderLog(1500).trimEnd());
        }
      }
      io.err(KEEP_HINT);
      return finish(1);
    }
    out.write(`check OK: every pod reaches every other pod (${pairCount(s)} pairs)\n`);
    return finish(0);
  }

  // Live mode: redraw on a terminal; elsewhere print when something changes.
  const tail = ['', ...hints(c, f), '', `Ctrl-C removes everything (namespaces ${c.tag.name('*')}, processes, ${c.dir}).`];
  let lastSig = '';
  if (tty) out.write('\x1b[?25l');
  while (!stopSignal) {
    const s = await snapshot(c, families);
    if (stopSignal) break;
    const body = renderSnapshot(s);
    if (tty) {
      out.write('\x1b[H\x1b[2J' + [header(c, f), `refreshed ${new Date().toLocaleTimeString()} (every ${f.refreshMs / 1000}s)`, '', ...body, ...tail].join('\n') + '\n');
    } else {
      const seen = (m: Matrix | undefined): boolean[][] | null => m?.map((r) => r.map((x) => x !== null)) ?? null;
      const sig = JSON.stringify([s.hosts.map((h) => [h.publicIp, h.subnet, h.ipv6Subnet, h.backend, h.daemon]), seen(s.matrix), seen(s.matrix6), s.etcdError]);
      if (sig !== lastSig) {
        const intro = lastSig === '' ? [header(c, f), ''] : [`--- ${new Date().toISOString()}: changed`];
        out.write([...intro, ...body, ...(lastSig === '' ? tail : []), ''].join('\n') + '\n');
        lastSig = sig;
      }
    }
    await Promise.race([sleep(f.refreshMs), stoppedP]);
  }
  return finish(130);
}

export { sandboxUsage };
