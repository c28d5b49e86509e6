/**
 * `npm run bench`: Rudder next to what it competes with, in one run, on one
 * machine, reported as ratios.
 *
 * What is compared (two "hosts" = network namespaces joined by veth pairs on
 * a bridge, 198.18.0.0/15, MTU 1500; built with src/topology):
 *   1. underlay veth          host 1 → host 2 directly: the limit.
 *   2. kernel VXLAN by hand   `ip link add ... type vxlan` point to point, MTU 1450.
 *   3. socat TUN/UDP          what a user scripts instead of an overlay daemon:
 *                             `socat TUN:...,tun-type=tun,iff-no-pi,up UDP:peer:port,bind=...`
 *                             on each side, MTU 1472. Untuned, as a user would run it.
 *   4. rudder udp             two real daemons, etcd, `{"Backend":{"Type":"udp"}}`;
 *                             host 1 → host 2's overlay address (its rbr0).
 *   5./6. rudder vxlan, rudder host-gw: same, other Backend.Type. A backend
 *                             whose daemons do not come up shows "n/a" (with the
 *                             reason) instead of failing the run.
 *   7.-9. flanneld udp, vxlan, host-gw: the real upstream flanneld (v0.20.2,
 *                             the anchors: src/topology/anchors.ts) set up like
 *                             the rudder variants; "n/a" with what to set where
 *                             the anchors are missing. Ratios rudder X / flanneld X
 *                             and the daemons' RSS after the run are reported.
 *   also: rudder wireguard (two real daemons, `{"Backend":{"Type":"wireguard"}}`)
 *                             and wireguard-go (Debian's, configured with `wg`
 *                             point to point, a TUN in each host namespace, MTU
 *                             1420): issue 14's ratios (rudder wireguard TCP vs
 *                             wireguard-go, kernel VXLAN, rudder udp; RTT; CPU per
 *                             Gbit/s). `--only wireguard` runs them with the
 *                             variants those ratios need.
 *   also, on a dual-stack underlay (hosts at 2001:2::N/64 too): underlay veth
 *                             IPv6, kernel VXLAN IPv6 by hand, rudder X IPv6 (a
 *                             dual-stack network, `EnableIPv6`), each right after
 *                             its IPv4 row: issue 15's IPv6 / IPv4 table and
 *                             targets. `--only ipv6` runs them (with rudder udp).
 *   (--pods adds "rudder X (pod→pod)" rows: the same daemons, pod to pod.)
 *   (--ab-baseline DIR adds after each rudder row its twin "rudder X (A)":
 *   the same topology with the daemons of the checkout in DIR, measured in
 *   the same rounds, and an A/B table of new / baseline per figure.)
 * Per variant: iperf3 TCP throughput; ping RTT; small-packet rate = iperf3 UDP
 * with 64-byte payloads at no rate limit, reported as packets/s the receiver
 * got (and loss); CPU time of the user-space forwarders (socat, the rudder
 * daemons) during each iperf3 run, from /proc/PID/stat, and from it the CPU
 * cost per Gbit/s and per 100k pkt/s where those processes forward.
 *
 * Why ratios: absolute numbers on a shared 2-core VM mean little and change
 * from machine to machine, but every variant here runs on the same kernel,
 * CPUs and moment, so "rudder udp / socat" and "x / underlay" are what carry
 * over. The issues' targets are stated that way (issue 8: rudder udp ≥ 8×
 * socat and ≥ 0.5× kernel VXLAN in TCP, ≥ 3× socat's packet rate).
 *
 * How noise is handled: all variants are built first and kept up, then
 * measured in rounds; each round runs every variant once (TCP, UDP, ping) in
 * an order rotated by one each round, so slow spells of the shared machine
 * hit all variants alike rather than one of them. The figure is the median
 * over rounds (default 3), with min–max shown so the spread is visible; load
 * average before and after is recorded. iperf3 omits the first second (slow
 * start, ARP). Nothing is retried until it looks good, and failures are listed.
 *
 * A benchmark, not a test: no thresholds, no exit status for "slow". The
 * targets are printed as ratios with how far off they are.
 *
 * Safety: everything happens in namespaces named rdb<tag>-*, made by the
 * topology harness and removed however the run ends (Cleanup, SIGINT too);
 * processes (iperf3 servers, socat, daemons) are ended by PID.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BenchParams, measureRtt, measureTcp, measureUdp, pinNamespaces, setClockTicks, startRetries, withCpu } from './measure';
import {
  type RunInfo,
  type Sample,
  type VariantResult,
  abTable,
  consoleTable,
  figuresTable,
  flannelTable,
  flannelTargetLines,
  forwardsInUserspace,
  ipv6Table,
  ipv6TargetLines,
  markdownReport,
  ratiosTable,
  summarize,
  svgChart,
  targetLines,
  targetText,
  wireguardTargetLines,
} from './report';
import { svgToPng } from './png';
import { checkBaseline, checkHostCpus, parseBenchArgs, selectVariants, usage } from './options';
import { BenchEnv, GROUP_COMPANIONS, IPERF_PORT, type Prepared, type Variant, defaultVariants } from './variants';
import { repoRoot } from '../src/topology/util';


function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return '?';
  }
}

/** The checkout's commit (short hash, "+dirty" with uncommitted changes), for the A/B report. */
function gitDescribe(dir: string): string {
  const head = sh('git', ['-C', dir, 'rev-parse', '--short', 'HEAD']);
  const dirty = sh('git', ['-C', dir, 'status', '--porcelain', '--untracked-files=no']);
  return dirty !== '' && dirty !== '?' ? `${head}+dirty` : head;
}

/** VmRSS of a process in MB; null when it is gone. */
function rssMb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function loadavg(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(' ');
}

const log = (msg: string): void => {
  process.stderr.write(`bench: ${msg}\n`);
};

async function measureOnce(v: Variant, p: Prepared, params: BenchParams, hostCpus: readonly [string, string] | null): Promise<Sample> {
  const s: Sample = { errors: [] };
  const pids = p.cpuPids();
  if (hostCpus !== null) {
    // Before every measurement: processes a variant started since (a restarted daemon) are pinned too.
    const [h1, h2] = p.hosts ?? [[p.client], [p.server]];
    await pinNamespaces(h1, hostCpus[0]);
    await pinNamespaces(h2, hostCpus[1]);
  }
  const path = { client: p.client, target: p.target, source: p.source, port: IPERF_PORT, server: p.server, cpus: hostCpus?.[0] };
  // A failed measurement is recorded and the others still run: one bad round must not hide the rest.
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      s.errors.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  await attempt('TCP', async () => {
    ({ value: s.tcp, cpuS: s.tcpCpuS } = await withCpu(pids, () => measureTcp(path, params)));
  });
  await attempt('UDP', async () => {
    ({ value: s.udp, cpuS: s.udpCpuS } = await withCpu(pids, () => measureUdp(path, params)));
  });
  await attempt('ping', async () => {
    s.rtt = await measureRtt(path, params);
  });
  const f = (x: number | undefined, d: number): string => (x === undefined ? 'n/a' : x.toFixed(d));
  log(
    `  ${v.label.padEnd(24)} TCP ${f(s.tcp?.mbps, 0)} Mbit/s  UDP ${f(s.udp?.rxPps, 0)} pkt/s (loss ${f(s.udp?.lossPct, 1)}%)  RTT ${f(s.rtt?.medianMs, 3)} ms` +
      (s.tcpCpuS != null ? `  cpu ${s.tcpCpuS.toFixed(2)}/${(s.udpCpuS ?? NaN).toFixed(2)} s` : '') +
      (s.errors.length ? `  errors: ${s.errors.join('; ')}` : ''),
  );
  return s;
}

async function main(): Promise<void> {
  const root = repoRoot();
  const opts = parseBenchArgs(process.argv.slice(2), path.join(root, 'bench', 'results'));
  if (opts.help) {
    console.log(usage());
    return;
  }
  const baselineBin = opts.abBaseline === null ? undefined : checkBaseline(opts.abBaseline);
  if (opts.hostCpus !== null) checkHostCpus(opts.hostCpus, os.cpus().length);
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  setClockTicks(Number(sh('getconf', ['CLK_TCK'])) || 100);

  const variants = selectVariants(defaultVariants({ pods: opts.pods, ...(baselineBin ? { baselineBin } : {}) }), opts.only, GROUP_COMPANIONS);

  const started = Date.now();
  const loadBefore = loadavg();
  const env = new BenchEnv(log);
  const results: VariantResult[] = variants.map((v) => ({
    id: v.id,
    label: v.label,
    group: v.group,
    ...(v.abTwinOf !== undefined ? { abTwinOf: v.abTwinOf } : {}),
    ...(v.family !== undefined ? { family: v.family } : {}),
    status: 'ok',
    samples: [],
  }));
  const prepared = new Map<string, Prepared>();
  const notes: string[] = [];

  try {
    // 1. Build every path first, so that all are measured under the same conditions.
    for (const [i, v] of variants.entries()) {
      log(`setting up ${v.label}`);
      try {
        const p = await v.setup(env);
        prepared.set(v.id, p);
        results[i]!.mtu = p.mtu;
      } catch (e) {
        results[i]!.status = 'n/a';
        results[i]!.reason = (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300);
        log(`  ${v.label}: n/a (${results[i]!.reason})`);
      }
    }

    // 2. Rounds, order rotated each round.
    const live = variants.filter((v) => prepared.has(v.id));
    const per = 2 * (opts.params.timeS + opts.params.omitS) + opts.params.pings * opts.params.pingIntervalS + 3;
    log(`measuring ${live.length} variants × ${opts.rounds} rounds (≈ ${Math.round((live.length * opts.rounds * per) / 60)} min)`);
    for (let r = 0; r < opts.rounds; r++) {
      log(`round ${r + 1}/${opts.rounds} (load ${loadavg()})`);
      for (let k = 0; k < live.length; k++) {
        const v = live[(k + r) % live.length] as Variant;
        const res = results.find((x) => x.id === v.id)!;
        res.samples.push(await measureOnce(v, prepared.get(v.id)!, opts.params, opts.hostCpus));
      }
    }
    // 3. The daemons' RSS after the run (rudder and flanneld), before anything is torn down.
    for (const [id, p] of prepared) {
      if (!p.daemonPids) continue;
      const res = results.find((x) => x.id === id)!;
      res.daemonRssMb = p.daemonPids().map(rssMb).filter((x): x is number => x !== null);
      log(`  ${res.label.padEnd(24)} daemon RSS ${res.daemonRssMb.map((x) => `${x.toFixed(1)} MB`).join(', ') || 'n/a'}`);
    }
  } finally {
    log('tearing down');
    await env.teardown().catch((e: unknown) => log(`teardown: ${e instanceof Error ? e.message : String(e)}`));
  }

  const runS = opts.params.timeS + opts.params.omitS;
  for (const r of results) if (r.status === 'ok') r.summary = summarize(r.samples, { runS, userspace: forwardsInUserspace(r.id) });
  for (const r of results) {
    if (r.status === 'ok' && !r.summary?.tcpMbps && !r.summary?.udpRxPps && !r.summary?.rttMedianMs) {
      r.status = 'n/a';
      r.reason = `every measurement failed: ${r.samples[0]?.errors[0] ?? '?'}`;
    }
  }

  const info: RunInfo = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? '?',
    loadBefore,
    loadAfter: loadavg(),
    durationS: (Date.now() - started) / 1000,
    params: opts.params,
    rounds: opts.rounds,
    ...(opts.hostCpus !== null ? { hostCpus: opts.hostCpus } : {}),
    node: process.version,
    iperf3: sh('iperf3', ['--version']).split('\n')[0] ?? '?',
    ...(opts.abBaseline !== null
      ? {
          ab: {
            dir: root,
            commit: gitDescribe(root),
            baselineDir: opts.abBaseline,
            baselineCommit: gitDescribe(opts.abBaseline),
          },
        }
      : {}),
    socat: (sh('socat', ['-V']).split('\n').find((l) => /socat version/.test(l)) ?? 'socat').replace(/^socat by.*$/, 'socat').trim(),
  };
  for (const r of startRetries) notes.push(`iperf3 start retried: ${r}`);
  if (opts.rounds < 3 || opts.params.timeS < 5) notes.push(`short run (${opts.rounds} round(s) of ${opts.params.timeS} s): figures are rough.`);

  const figures = figuresTable(results, info);
  const rat = ratiosTable(results);
  console.log('');
  console.log(consoleTable(figures));
  console.log('');
  console.log(consoleTable(rat));
  const fl = flannelTable(results);
  if (fl) {
    console.log('');
    console.log(consoleTable(fl));
  }
  const v6 = ipv6Table(results);
  if (v6) {
    console.log('');
    console.log(consoleTable(v6));
  }
  const ab = abTable(results, info);
  if (ab) {
    console.log('');
    console.log(`A/B: ${info.ab?.commit ?? 'this build'} / ${info.ab?.baselineCommit ?? 'baseline'} (A): median ratio over the rounds (per-round min–max)`);
    console.log(consoleTable(ab));
  }
  const targets = [...targetLines(results), ...flannelTargetLines(results), ...wireguardTargetLines(results), ...ipv6TargetLines(results)];
  if (targets.length) {
    console.log('');
    for (const t of targets) console.log(targetText(t));
  }
  for (const r of results.filter((x) => x.status === 'n/a')) console.log(`${r.label}: n/a — ${r.reason}`);

  if (opts.write) {
    fs.mkdirSync(opts.outDir, { recursive: true });
    const write = (name: string, text: string): void => {
      const f = path.join(opts.outDir, name);
      fs.writeFileSync(`${f}.tmp`, text);
      fs.renameSync(`${f}.tmp`, f);
    };
    write('latest.md', markdownReport(results, info, notes));
    write('latest.svg', svgChart(results, info));
    write('latest.json', JSON.stringify({ info, results }, null, 2) + '\n');
    const png = svgToPng(path.join(opts.outDir, 'latest.svg'));
    console.log(`\nwrote ${path.join(opts.outDir, 'latest.md')}, latest.svg, ${'png' in png ? 'latest.png, ' : ''}latest.json`);
    if ('error' in png) console.log(`no latest.png: ${png.error}`);
  }
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
