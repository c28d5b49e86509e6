/**
 * `npm run soak` (root): does the daemon's memory stay flat while leases churn?
 *
 * One namespaced host (src/topology: switch, etcd namespace, host h1) runs
 * `bin/rudder` for N minutes (default 10) with a short lease TTL, so its own
 * lease is renewed all the time too. A second process (this file with
 * --churn, run inside the etcd namespace) creates one peer lease per second
 * (a key with an etcd lease, as a daemon writes it) and deletes the one it
 * created `--live` seconds earlier, so the daemon's watcher sees an added and
 * a removed lease every second and its backend programs and unprograms a
 * peer every second. The daemon's RSS is sampled from /proc/PID/status
 * (VmRSS; `ip netns exec` and setpriv exec in place, so the PID is the
 * daemon's own) every --sample-s seconds.
 *
 * Reported (stdout; --json FILE for every sample): RSS at ready, after the
 * warm-up (first minute), at the end and the maximum; the least-squares slope
 * of RSS over the time after warm-up (kB/min); churn operations done; the
 * daemon's peer-lease add/remove log lines; whether the daemon still runs.
 * A measurement, not a test: no threshold, exit status 0 unless the run
 * itself fails (daemon died, setup failed).
 *
 *   npm run soak                       10 minutes, udp backend
 *   npm run soak -- --minutes 1 --backend vxlan
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createCluster, sleep, type Cluster } from '../src/topology';
import { EtcdClient } from '../src/etcd/client';

interface Args {
  minutes: number;
  sampleS: number;
  backend: string;
  live: number;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { minutes: 10, sampleS: 10, backend: 'udp', live: 20, json: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const num = (): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${k}=${v}: expected a positive number`);
      i++;
      return n;
    };
    if (k === '--minutes') a.minutes = num();
    else if (k === '--sample-s') a.sampleS = num();
    else if (k === '--live') a.live = Math.round(num());
    else if (k === '--backend') {
      a.backend = String(v);
      i++;
    } else if (k === '--json') {
      a.json = String(v);
      i++;
    } else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: node dist/bench/soak.js [--minutes 10] [--sample-s 10] [--backend udp|vxlan|host-gw] [--live 20] [--json FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

/** VmRSS of a process in kB, null if it is gone. */
export function rssKb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Least-squares slope of y over x. */
function slope(points: ReadonlyArray<{ x: number; y: number }>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * --churn ENDPOINT PREFIX LIVE: every second create peer lease n (10.77.n.0/24 style,
 * in 10.77.0.0/16 minus the daemon's range) and delete lease n-LIVE. Prints a count
 * line every 10 operations so the parent can report it.
 */
async function churn(endpoint: string, prefix: string, live: number): Promise<void> {
  const client = new EtcdClient({ endpoints: [endpoint] });
  const keyOf = (n: number): string => {
    const slot = n % 200; // 10.77.50.0 .. 10.77.249.0: the daemon's own range is 10.77.0.0-10.77.49.0
    return `${prefix}/subnets/10.77.${50 + slot}.0-24`;
  };
  let stop = false;
  process.on('SIGTERM', () => (stop = true));
  let ops = 0;
  let errors = 0;
  for (let n = 0; !stop; n++) {
    const t0 = Date.now();
    try {
      const lease = await client.leaseGrant(60);
      const slot = n % 200;
      await client.put(keyOf(n), JSON.stringify({ PublicIP: `198.19.1.${(slot % 250) + 1}`, BackendType: process.env.SOAK_BACKEND ?? 'udp', BackendData: process.env.SOAK_BACKEND === 'vxlan' ? { VtepMAC: `0e:00:00:00:00:${(slot % 256).toString(16).padStart(2, '0')}` } : {} }), { lease });
      ops++;
      if (n >= live) {
        await client.deleteRange(keyOf(n - live));
        ops++;
      }
    } catch (e) {
      errors++;
      process.stderr.write(`churn: ${(e as Error).message}\n`);
    }
    if (n % 10 === 0) process.stdout.write(`churn ops=${ops} errors=${errors}\n`);
    await sleep(Math.max(0, 1000 - (Date.now() - t0)));
  }
  process.stdout.write(`churn ops=${ops} errors=${errors}\n`);
  client.close();
}

async function soak(a: Args): Promise<number> {
  const log = (s: string): void => void process.stdout.write(`soak: ${s}\n`);
  let c: Cluster | undefined;
  try {
    c = await createCluster({ hosts: 1, prefix: 'rds', rudderArgs: ['-subnet-lease-ttl=10s', '-subnet-lease-renew-margin=5s'] });
    // The daemon picks from 10.77.0.0-10.77.49.0; the churner uses 10.77.50.0 and up.
    await c.putConfig({ Network: '10.77.0.0/16', SubnetMin: '10.77.0.0', SubnetMax: '10.77.49.0', Backend: { Type: a.backend } });
    const h = c.host(1);
    await h.up();
    const pid = h.rudder?.pid;
    if (!pid) throw new Error('no daemon PID');
    const etcdNs = c.etcdNs[0];
    if (!etcdNs) throw new Error('no etcd namespace');
    const churnLog = path.join(c.dir, 'churn.log');
    const churner = await etcdNs.spawn([process.execPath, __filename, '--churn', c.etcdEndpoints[0] as string, c.etcdPrefix, String(a.live)], {
      logFile: churnLog,
      label: 'lease churner',
      env: { ...process.env, SOAK_BACKEND: a.backend },
    });
    log(`daemon PID ${pid} (${a.backend}), churner PID ${churner.pid}; ${a.minutes} min, sample every ${a.sampleS} s`);

    const t0 = Date.now();
    const samples: Array<{ t: number; rssKb: number }> = [];
    const ready = rssKb(pid);
    if (ready === null) throw new Error('daemon gone before the first sample');
    samples.push({ t: 0, rssKb: ready });
    const endAt = t0 + a.minutes * 60_000;
    while (Date.now() < endAt) {
      await sleep(Math.min(a.sampleS * 1000, Math.max(0, endAt - Date.now())));
      const r = rssKb(pid);
      if (r === null || !h.rudder?.running) throw new Error(`daemon exited during the soak; log ${h.logFile}:\n${h.rudderLog(3000)}`);
      const t = (Date.now() - t0) / 1000;
      samples.push({ t, rssKb: r });
      if (samples.length % 6 === 0) log(`t=${Math.round(t)}s RSS ${r} kB`);
    }
    await churner.stop(5000);
    const churnOut = fs.readFileSync(churnLog, 'utf8');
    const last = [...churnOut.matchAll(/churn ops=(\d+) errors=(\d+)/g)].pop();
    const daemonLog = fs.readFileSync(h.logFile, 'utf8');
    const added = (daemonLog.match(/peer lease added/g) ?? []).length;
    const removed = (daemonLog.match(/peer lease removed/g) ?? []).length;
    const renewed = (daemonLog.match(/lease renewed/g) ?? []).length;

    const warm = samples.filter((s) => s.t >= Math.min(60, (a.minutes * 60) / 4));
    const afterWarm = warm[0] ?? samples[0]!;
    const end = samples[samples.length - 1]!;
    const max = samples.reduce((m, s) => Math.max(m, s.rssKb), 0);
    const kbPerMin = slope(warm.map((s) => ({ x: s.t / 60, y: s.rssKb })));
    const result = {
      backend: a.backend,
      minutes: a.minutes,
      rssKb: { ready, afterWarmup: afterWarm.rssKb, afterWarmupAtS: Math.round(afterWarm.t), end: end.rssKb, max },
      slopeKbPerMinAfterWarmup: Math.round(kbPerMin * 10) / 10,
      churnOps: last ? Number(last[1]) : null,
      churnErrors: last ? Number(last[2]) : null,
      daemonPeerAdded: added,
      daemonPeerRemoved: removed,
      daemonRenewals: renewed,
      daemonRunning: h.rudder?.running ?? false,
      samples,
    };
    process.stdout.write(
      [
        '',
        `| backend | minutes | RSS at ready | RSS after warm-up (${result.rssKb.afterWarmupAtS} s) | RSS at end | max | slope after warm-up | churn ops (errors) | peer added/removed | renewals |`,
        '|---|---|---|---|---|---|---|---|---|---|',
        `| ${a.backend} | ${a.minutes} | ${(ready / 1024).toFixed(1)} MB | ${(afterWarm.rssKb / 1024).toFixed(1)} MB | ${(end.rssKb / 1024).toFixed(1)} MB | ${(max / 1024).toFixed(1)} MB | ${result.slopeKbPerMinAfterWarmup} kB/min | ${result.churnOps} (${result.churnErrors}) | ${added}/${removed} | ${renewed} |`,
        '',
      ].join('\n'),
    );
    if (a.json) fs.writeFileSync(a.json, JSON.stringify(result, null, 2) + '\n');
    return 0;
  } finally {
    await c?.teardown();
  }
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const job =
    argv[0] === '--churn'
      ? churn(argv[1] as string, argv[2] as string, Number(argv[3] ?? 20)).then(() => 0)
      : soak(parseArgs(argv));
  job.then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`soak: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
