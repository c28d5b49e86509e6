/**
 * One measurement each: iperf3 TCP throughput, iperf3 UDP small-packet rate,
 * ping RTT, and the CPU time of a set of processes while a measurement runs.
 * Nothing here judges a result; it only measures and parses.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type ManagedProcess, type Netns, formatCommand, parsePing, run, sleep, waitUntil } from '../src/topology';

export interface BenchParams {
  /** iperf3 -t, seconds measured. */
  timeS: number;
  /** iperf3 -O, seconds omitted at the start (TCP slow start, ARP, ...). */
  omitS: number;
  /** Pings per RTT measurement. */
  pings: number;
  /** Seconds between pings. */
  pingIntervalS: number;
  /** UDP payload size of the packet-rate test. */
  udpLen: number;
}

export interface TcpResult {
  /** Received goodput, Mbit/s. */
  mbps: number;
  retransmits: number;
}

export interface UdpResult {
  /** Packets the receiver got per second. */
  rxPps: number;
  /**
   * Packets per second dropped at the receiving iperf3's own socket (its
   * receive buffer was full): they crossed the path under test and were lost
   * only because the receiving program could not read them in time. Over the
   * whole run, omitted second included; null when it could not be read.
   */
  sockDropPps: number | null;
  /** Packets the sender sent per second. */
  txPps: number;
  lossPct: number;
}

export interface RttResult {
  medianMs: number;
  avgMs: number;
  lossPct: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
export { median };

/**
 * An iperf3 server in `ns` bound to `bindIp`, ended by PID with the
 * namespace's clean-up. Bound, because a host has several addresses: an
 * unbound UDP server answers the client's UDP handshake from whatever source
 * address the route back picks, the client's connected socket drops that
 * answer, and the test never starts. -J so the client gets the receiver's
 * figures (--get-server-output) as JSON.
 */
export async function startIperfServer(ns: Netns, bindIp: string, port: number, logDir: string): Promise<ManagedProcess> {
  const logFile = path.join(logDir, `iperf3-${ns.name}-${bindIp}-${port}.log`);
  const p = await ns.spawn(['iperf3', '-s', '-J', '-B', bindIp, '-p', String(port)], { logFile, label: `iperf3 server ${bindIp} in ${ns.name}` });
  await waitUntil(
    async () => {
      if (!p.running) throw new Error(`iperf3 server exited: ${p.logTail(500)}`);
      const r = await ns.exec(['ss', '-Hltn', `sport = :${port}`], { allowFailure: true });
      // ss writes an IPv6 address in brackets: [fd42:42::1]:5201.
      return r.stdout.includes(bindIp.includes(':') ? `[${bindIp}]:${port}` : `${bindIp}:${port}`);
    },
    { giveUpMs: 15_000, intervalMs: 100, what: `iperf3 server on :${port} in ${ns.name}` },
  );
  return p;
}

interface IperfSum {
  bytes?: number;
  seconds?: number;
  packets?: number;
  lost_packets?: number;
  bits_per_second?: number;
  retransmits?: number;
}
interface IperfJson {
  error?: string;
  end?: { sum_received?: IperfSum; sum_sent?: IperfSum; sum?: IperfSum };
  server_output_json?: { end?: { sum_received?: IperfSum; sum?: IperfSum } };
}

/** Errors that mean "the test never started" (e.g. iperf3's one-shot UDP stream handshake got lost), not a result. */
const START_FAILURE = /unable to (read from|connect|send to|write to) stream|unable to connect to server|control socket has closed unexpectedly/i;
const START_TRIES = 2;

/** Test starts that failed and were retried, for the report. */
export const startRetries: string[] = [];

/** `argv` run on the CPUs of list `cpus` (taskset), or as it is. */
const onCpus = (cpus: string | undefined, argv: string[]): string[] => (cpus === undefined ? argv : ['taskset', '-c', cpus, ...argv]);

async function iperf(client: Netns, args: string[], timeS: number, cpus: string | undefined): Promise<IperfJson> {
  // `timeout` bounds a hung test (lost control connection); it ends iperf3 by its PID.
  const argv = ['timeout', '-k', '5', String(Math.ceil(timeS) + 30), ...onCpus(cpus, ['iperf3', '-J', '--connect-timeout', '5000', ...args])];
  for (let attempt = 1; ; attempt++) {
    const r = await client.exec(argv, { allowFailure: true });
    let j: IperfJson;
    try {
      j = JSON.parse(r.stdout) as IperfJson;
    } catch {
      throw new Error(`${formatCommand(argv)} in ${client.name}: exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    }
    if (!j.error) return j;
    // Only a test that never ran is retried, and it is recorded; a poor result is never retried.
    const started = (j.end?.sum_sent?.bytes ?? j.end?.sum?.bytes ?? 0) > 0;
    if (!started && START_FAILURE.test(j.error) && attempt < START_TRIES) {
      startRetries.push(`${client.name} iperf3 ${args.join(' ')}: "${j.error}" before the test started; retried`);
      await sleep(1000);
      continue;
    }
    throw new Error(`iperf3 in ${client.name}: ${j.error}`);
  }
}

/** Where the client sends from: `source` binds it (-B), so the replies come back over the path under test too. */
export interface Path {
  client: Netns;
  target: string;
  source?: string | undefined;
  port: number;
  /** The receiving namespace: where the UDP test reads its socket's drop counter. */
  server?: Netns | undefined;
  /** --host-cpus: the client's CPU list (taskset); absent: not pinned. */
  cpus?: string | undefined;
}

/**
 * Pins every process now in namespaces `nss` (every thread: taskset -a) to
 * the CPUs of `cpus`; threads they start later inherit it. A process that
 * ended meanwhile is skipped; one that cannot be pinned (a second try, in
 * case a thread ended under the first) is an error, since the run would
 * not be the model it says.
 */
export async function pinNamespaces(nss: readonly Netns[], cpus: string): Promise<void> {
  for (const ns of nss) {
    for (const pid of await ns.pids()) {
      const argv = ['taskset', '-a', '-p', '-c', cpus, String(pid)];
      let r = await run(argv, { allowFailure: true });
      if (r.code !== 0) r = await run(argv, { allowFailure: true });
      if (r.code !== 0 && fs.existsSync(`/proc/${pid}`))
        throw new Error(`--host-cpus: could not pin PID ${pid} in ${ns.name} to CPUs ${cpus}: ${(r.stderr || r.stdout).trim().slice(0, 200)}`);
    }
  }
}

/**
 * Drop counters (the last column) of the UDP sockets bound to local `port`
 * in a /proc/net/udp listing, by socket inode.
 */
export function udpDropsByInode(listing: string, port: number): Map<string, number> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out = new Map<string, number>();
  for (const line of listing.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local rem st tx:rx tr:when retr uid timeout inode ref pointer drops
    if (f.length < 13 || !f[1]?.endsWith(`:${hexPort}`)) continue;
    const drops = Number(f[12]);
    if (f[9] !== undefined && Number.isFinite(drops)) out.set(f[9], drops);
  }
  return out;
}

/**
 * Follows the drop counters of the UDP sockets on `port` in `ns` while a test
 * runs: iperf3 opens a socket per test and closes it at the end, so the
 * counters are sampled (through /proc/PID/net/udp of a process in the
 * namespace: no process started per sample) and the last value of each socket
 * kept. stop() returns the sum, or null when nothing could be read.
 */
async function followSocketDrops(ns: Netns, port: number): Promise<{ stop: () => number | null }> {
  // Any process of the namespace shows its /proc/net/udp; one that ends hands over to the next.
  const pids = (await ns.pids().catch(() => [])).map(String);
  const last = new Map<string, number>();
  let read = false;
  const sample = (): void => {
    while (pids.length > 0) {
      try {
        const dir = `/proc/${pids[0] as string}/net`;
        // IPv6 sockets are listed in udp6, with the same columns (absent on a kernel without IPv6).
        const listing = fs.readFileSync(`${dir}/udp`, 'utf8') + (fs.existsSync(`${dir}/udp6`) ? fs.readFileSync(`${dir}/udp6`, 'utf8').split('\n').slice(1).join('\n') : '');
        for (const [inode, d] of udpDropsByInode(listing, port)) last.set(inode, Math.max(d, last.get(inode) ?? 0));
        read = true;
        return;
      } catch {
        pids.shift();
      }
    }
  };
  sample();
  const timer = setInterval(sample, 200);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return read ? [...last.values()].reduce((a, b) => a + b, 0) : null;
    },
  };
}

const bindArgs = (source: string | undefined): string[] => (source ? ['-B', source] : []);

export async function measureTcp({ client, target, source, port, cpus }: Path, p: BenchParams): Promise<TcpResult> {
  const j = await iperf(client, [...bindArgs(source), '-c', target, '-p', String(port), '-t', String(p.timeS), '-O', String(p.omitS)], p.timeS + p.omitS, cpus);
  const bps = j.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') throw new Error('iperf3 TCP: no end.sum_received in the JSON');
  return { mbps: bps / 1e6, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
}

/**
 * Small-packet rate: UDP with `udpLen`-byte payloads, no rate limit (-b 0),
 * so the slowest stage of the path sets the rate. The figure is what the
 * receiver got per second, from the server's own report (bytes received /
 * payload size; the client's loss figure counts the omitted second wrongly
 * in iperf3 3.12); loss = 1 - received / sent.
 */
export async function measureUdp({ client, target, source, port, server, cpus }: Path, p: BenchParams): Promise<UdpResult> {
  const drops = server ? await followSocketDrops(server, port) : null;
  let j: IperfJson;
  let dropped: number | null = null;
  try {
    j = await iperf(
      client,
      [...bindArgs(source), '-c', target, '-p', String(port), '-u', '-l', String(p.udpLen), '-b', '0', '-t', String(p.timeS), '-O', String(p.omitS), '--get-server-output'],
      p.timeS + p.omitS,
      cpus,
    );
  } finally {
    dropped = drops?.stop() ?? null;
  }
  const sent = j.end?.sum;
  const recv = j.server_output_json?.end?.sum_received;
  if (!sent || typeof sent.packets !== 'number' || !sent.seconds) throw new Error('iperf3 UDP: no end.sum packets in the JSON');
  if (!recv || typeof recv.bytes !== 'number' || !recv.seconds) throw new Error('iperf3 UDP: no server_output_json.end.sum_received (server not started with -J?)');
  const rx = recv.bytes / p.udpLen;
  const txPps = sent.packets / sent.seconds;
  const rxPps = rx / recv.seconds;
  const sockDropPps = dropped === null ? null : dropped / (p.timeS + p.omitS);
  return { rxPps, txPps, sockDropPps, lossPct: txPps > 0 ? Math.max(0, 100 * (1 - rxPps / txPps)) : 0 };
}

export async function measureRtt({ client, target, source, cpus }: Path, p: BenchParams): Promise<RttResult> {
  const argv = onCpus(cpus, ['ping', '-n', '-c', String(p.pings), '-i', String(p.pingIntervalS), '-W', '1', ...(source ? ['-I', source] : []), target]);
  const out = await client.exec(argv, { allowFailure: true });
  const r = parsePing(target, out.stdout + out.stderr, out.code);
  if (r.replies.length === 0) throw new Error(`ping ${target} from ${client.name}: no reply (${r.errors[0] ?? 'lost'})`);
  const times = r.replies.map((x) => x.timeMs);
  return {
    medianMs: median(times),
    avgMs: times.reduce((a, b) => a + b, 0) / times.length,
    lossPct: r.transmitted > 0 ? (100 * (r.transmitted - r.received)) / r.transmitted : 0,
  };
}

// ---------------------------------------------------------------------------
// CPU time of processes (utime + stime of every thread, from /proc/PID/stat)

let clkTck = 100;
export function setClockTicks(n: number): void {
  if (n > 0) clkTck = n;
}

/** CPU seconds (user + system) used so far by `pid`; NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (Number(f[11]) + Number(f[12])) / clkTck;
  } catch {
    return NaN;
  }
}

/** Runs `fn` and returns its result with the CPU seconds `pids` used meanwhile (summed). */
export async function withCpu<T>(pids: readonly number[], fn: () => Promise<T>): Promise<{ value: T; cpuS: number | null }> {
  const before = pids.map(cpuSeconds);
  const value = await fn();
  if (pids.length === 0) return { value, cpuS: null };
  const after = pids.map(cpuSeconds);
  let sum = 0;
  for (let i = 0; i < pids.length; i++) sum += (after[i] as number) - (before[i] as number);
  return { value, cpuS: Number.isFinite(sum) ? sum : null };
}

export { sleep };
