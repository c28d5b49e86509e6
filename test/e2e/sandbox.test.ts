/**
 * `bin/rudder sandbox` as a user runs it, as a child process: `--check` builds
 * a 3-host udp cluster, verifies the mesh, prints the table and removes every
 * namespace it made (and with --ipv6 and host-gw, the same over both
 * families); a sandbox SIGKILLed half-way leaves namespaces behind
 * that the next start removes; bad flags and machines that cannot run it get
 * clear errors.
 *
 * Each test uses its own --name, so neither a user's sandbox nor a parallel
 * test run is touched (and the "name is taken" rule does not get in the way).
 * Waits have generous give-ups and are never claims about speed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { listNetns, pidAlive, removeLeftovers, run } from '../../src/topology';
import { skipUnlessEtcd, skipUnlessRoot } from '../helpers/env';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'rudder');
const GIVE_UP_MS = 120_000;

/** A sandbox name of our own: 3 letters + 3 random chars (the harness allows 6). */
function uniqueName(): string {
  return `sbt${crypto.randomBytes(3).readUIntBE(0, 3).toString(36).padStart(3, '0').slice(-3)}`;
}

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RUDDER_')) env[k] = v;
  return { ...env, ...extra };
}

interface Running {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];
const names: string[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // Whatever a failed test left behind (only our own names).
  for (const n of names) removeLeftovers(n);
});

function startSandbox(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Running {
  const child = spawn(BIN, ['sandbox', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, out: () => out, err: () => err, done };
}

async function ours(name: string): Promise<string[]> {
  return (await listNetns()).filter((n) => n.startsWith(name));
}

/** `namespaces: sbtx1yabcd-*; files: /tmp/rudder-...` → the run's namespace prefix and temp dir. */
function cmdline(pid: string): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '(gone)';
  }
}

function runOf(out: string): { run: string; dir: string } {
  const m = /^namespaces: (\S+)-\*; files: (\S+)$/m.exec(out);
  assert.ok(m, `the sandbox names its namespaces and files:\n${out}`);
  return { run: m[1] as string, dir: m[2] as string };
}

/** Checks the printed status: every host running with a lease, every off-diagonal cell an RTT. */
function assertFullMesh(out: string, hosts: number): void {
  const hostRows = out.split('\n').filter((l) => /^h\d+\s/.test(l));
  assert.equal(hostRows.length, hosts, `one row per host:\n${out}`);
  for (const row of hostRows) {
    const cols = row.trim().split(/\s{2,}/);
    // HOST, PUBLIC IP, SUBNET, BACKEND, DAEMON, POD, POD IP
    assert.equal(cols.length, 7, `row ${row}`);
    const [name, pub, subnet, backend, daemon, pod, podIp] = cols as [string, string, string, string, string, string, string];
    const i = Number(name.slice(1));
    assert.equal(pub, `198.18.0.${i}`, row);
    assert.match(subnet, /^10\.0\.\d+\.0\/24$/, row);
    assert.equal(backend, 'udp', row);
    assert.match(daemon, /^running \(pid \d+\)$/, row);
    assert.match(pod, new RegExp(`-p${i}$`), row);
    assert.equal(podIp, subnet.replace(/0\/24$/, '2'), row);
  }
  const subnets = hostRows.map((r) => r.trim().split(/\s{2,}/)[2]);
  assert.equal(new Set(subnets).size, hosts, `distinct subnets: ${subnets.join(' ')}`);

  const header = out.split('\n').find((l) => /^\s+from \\ to\s/.test(l));
  assert.ok(header, `a reachability matrix:\n${out}`);
  const rows = out.split('\n').filter((l) => /^\s+h\d+(\s+(-|✗|[\d.]+))+\s*$/.test(l));
  assert.equal(rows.length, hosts, `one matrix row per host:\n${out}`);
  rows.forEach((row, i) => {
    const cells = row.trim().split(/\s+/).slice(1);
    assert.equal(cells.length, hosts, row);
    cells.forEach((cell, j) => {
      if (i === j) assert.equal(cell, '-', row);
      else assert.match(cell, /^\d+(\.\d+)?$/, `h${i + 1} → h${j + 1} has an RTT: ${row}`);
    });
  });
  assert.match(out, new RegExp(`^reachable: ${hosts * (hosts - 1)}/${hosts * (hosts - 1)} pod pairs$`, 'm'));
}

describe('rudder sandbox (needs root and etcd)', { skip: skipUnlessRoot || skipUnlessEtcd }, () => {
  it('--check --hosts 3 builds a udp cluster, every pod reaches every other, and nothing of it remains', async () => {
    const name = uniqueName();
    names.push(name);
    const sb = startSandbox(['--check', '--hosts', '3', '--name', name]);
    const res = await sb.done;
    const out = sb.out();
    assert.equal(res.code, 0, `exit status 0:\n${out}\n${sb.err()}`);
    assertFullMesh(out, 3);
    assert.match(out, /check OK: every pod reaches every other pod \(6 pairs\)/);
    assert.match(out, /\[\d\] every pod reaching every other pod/, 'progress steps are shown');

    const { run: runName, dir } = runOf(out);
    assert.ok(runName.startsWith(name), runName);
    assert.deepEqual(await ours(name), [], 'no namespace of the sandbox remains');
    assert.equal(fs.existsSync(dir), false, `run dir ${dir} removed`);
    for (const pid of [...out.matchAll(/running \(pid (\d+)\)/g)].map((m) => Number(m[1]))) {
      assert.equal(pidAlive(pid), false, `daemon ${pid} ended`);
    }
  });

  it('--check --ipv6 with host-gw: a column per family, every pod reaches every other over IPv4 and IPv6', async () => {
    const name = uniqueName();
    names.push(name);
    const sb = startSandbox(['--check', '--hosts', '2', '--backend', 'host-gw', '--ipv6', '--name', name]);
    const res = await sb.done;
    const out = sb.out();
    assert.equal(res.code, 0, `exit status 0:\n${out}\n${sb.err()}`);
    assert.match(out, /"EnableIPv6":true,"IPv6Network":"fd10::\/48"/, 'the config it publishes');
    const head = out.split('\n').find((l) => l.startsWith('HOST'));
    assert.deepEqual(head?.split(/\s{2,}/), ['HOST', 'PUBLIC IP', 'PUBLIC IPV6', 'SUBNET', 'IPV6 SUBNET', 'BACKEND', 'DAEMON', 'POD', 'POD IP', 'POD IPV6']);
    for (const row of out.split('\n').filter((l) => /^h\d+\s/.test(l))) {
      const [h, , pub6, , sub6, , , , , pod6] = row.trim().split(/\s{2,}/);
      assert.equal(pub6, `2001:2::${h?.slice(1)}`, row);
      assert.match(sub6 ?? '', /^fd10:0:0:[0-9a-f]{1,4}::\/64$/, row);
      assert.equal(pod6, sub6?.replace(/::\/64$/, '::2'), row);
    }
    assert.match(out, /^\s+from \\ to\s+h1 v4\s+h1 v6\s+h2 v4\s+h2 v6$/m);
    assert.match(out, /^reachable: 4\/4 pod pairs and families \(IPv4 2\/2, IPv6 2\/2\)$/m);
    assert.match(out, /check OK: every pod reaches every other pod \(4 pairs\)/);
    assert.deepEqual(await ours(name), [], 'no namespace of the sandbox remains');
  });

  it('--check fails, naming every unreachable pair, when the daemons route nothing', async (t) => {
    // A stand-in daemon that writes a subnet file (one /24 per host, from its
    // h<N> directory) and then does nothing: the pods get bridges and
    // addresses, but no packet ever crosses between hosts.
    const dir = tempDir(t, 'rudder-sandbox-standin-');
    const standIn = path.join(dir, 'rudder-standin');
    fs.writeFileSync(
      standIn,
      [
        '#!/bin/sh',
        'for a in "$@"; do case $a in -subnet-file=*) f=${a#-subnet-file=} ;; esac; done',
        'i=$(basename "$(dirname "$f")" | tr -dc 0-9)',
        "printf 'RUDDER_NETWORK=10.0.0.0/16\\nRUDDER_SUBNET=10.0.%s.1/24\\nRUDDER_MTU=1472\\nRUDDER_IPMASQ=false\\n' \"$i\" > \"$f.tmp\"",
        'mv "$f.tmp" "$f"',
        'exec sleep infinity',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const name = uniqueName();
    names.push(name);
    const sb = startSandbox(['--check', '--hosts', '3', '--name', name, '--rudder-bin', standIn, '--give-up', '2s']);
    const res = await sb.done;
    const out = sb.out();
    const err = sb.err();
    assert.equal(res.code, 1, `exit status 1:\n${out}\n${err}`);
    assert.match(err, /check FAILED: 6 of 6 pod pairs unreachable/);
    for (let i = 1; i <= 3; i++) {
      for (let j = 1; j <= 3; j++) {
        if (i !== j) assert.match(err, new RegExp(`^  h${i} \\(10\\.0\\.${i}\\.2\\) → h${j} \\(10\\.0\\.${j}\\.2\\)$`, 'm'), `pair h${i} → h${j} listed`);
      }
    }
    assert.match(out, /^reachable: 0\/6 pod pairs$/m);
    const rows = out.split('\n').filter((l) => /^\s+h\d+(\s+(-|✗|[\d.]+))+\s*$/.test(l));
    assert.equal(rows.length, 3, out);
    for (const row of rows) assert.equal(row.split('✗').length - 1, 2, `two ✗ per row: ${row}`);
    assert.doesNotMatch(out, /check OK/);
    assert.deepEqual(await ours(name), [], 'a failed check also removes everything');
  });

  it('a sandbox SIGKILLed half-way leaves namespaces that the next start removes', async () => {
    const name = uniqueName();
    names.push(name);
    const first = startSandbox(['--hosts', '2', '--name', name]);
    // Mid-way: once the daemons are being started.
    await waitUntil(() => /\[4\] 2 rudder daemon/.test(first.out()) || first.child.exitCode !== null, {
      giveUpMs: GIVE_UP_MS,
      what: 'the first sandbox to reach the daemon step',
    });
    assert.equal(first.child.exitCode, null, `the first sandbox still runs:\n${first.out()}\n${first.err()}`);
    const { run: killedRun, dir: killedDir } = runOf(first.out());
    first.child.kill('SIGKILL');
    await first.done;

    const left = await ours(killedRun);
    assert.ok(left.length >= 3, `the killed sandbox left namespaces behind (switch, etcd, hosts): ${left.join(' ')}`);
    // Its processes die with it (parent-death signal), namespaces stay.
    let alive: string[] = [];
    await waitUntil(
      async () => {
        alive = [];
        for (const ns of await ours(killedRun)) {
          const r = await run(['ip', 'netns', 'pids', ns], { allowFailure: true });
          for (const pid of r.stdout.split(/\s+/).filter(Boolean)) alive.push(`${ns}: ${pid} ${cmdline(pid)}`);
        }
        return alive.length === 0;
      },
      { giveUpMs: GIVE_UP_MS, what: 'the killed sandbox\'s processes to end' },
    ).catch((e: unknown) => assert.fail(`${String(e)}; still running:\n${alive.join('\n')}`));

    const second = startSandbox(['--check', '--hosts', '2', '--name', name]);
    const res = await second.done;
    const out = second.out();
    assert.equal(res.code, 0, `second run exit status 0:\n${out}\n${second.err()}`);
    const swept = /^removed leftovers of an earlier sandbox that did not clean up: (.*)$/m.exec(out);
    assert.ok(swept, `the second run reports the sweep:\n${out}`);
    const sweptNames = (swept[1] as string).split(' ');
    for (const ns of left) assert.ok(sweptNames.includes(ns), `${ns} swept`);
    assert.ok(sweptNames.includes(killedDir), `${killedDir} swept`);
    assertFullMesh(out, 2);
    assert.deepEqual(await ours(name), [], 'nothing of either run remains');
    assert.equal(fs.existsSync(killedDir), false);
  });

  it('SIGTERM stops a live sandbox and removes everything', async () => {
    const name = uniqueName();
    names.push(name);
    const sb = startSandbox(['--hosts', '2', '--name', name, '--refresh', '1s']);
    await waitUntil(() => /^reachable: \d+\/2 pod pairs$/m.test(sb.out()) || sb.child.exitCode !== null, {
      giveUpMs: GIVE_UP_MS,
      what: 'the live table',
    });
    const out = sb.out();
    assert.equal(sb.child.exitCode, null, `still running:\n${out}\n${sb.err()}`);
    assert.match(out, /sudo ip netns exec \S+-p1 bash/, 'says how to step into a pod');
    assert.match(out, /h1 {2}\/\S+\/h1\/rudder\.log/, 'says where the logs are');
    const { run: runName } = runOf(out);
    assert.ok((await ours(runName)).length > 0);
    assert.ok(sb.child.kill('SIGTERM'));
    const res = await sb.done;
    assert.equal(res.code, 128 + 15, `exit status after SIGTERM:\n${sb.out()}\n${sb.err()}`);
    assert.match(sb.out(), /everything the sandbox made is removed/);
    assert.deepEqual(await ours(name), []);
  });

  it('a name in use by a running sandbox is a clear error', async () => {
    const name = uniqueName();
    names.push(name);
    const first = startSandbox(['--hosts', '1', '--name', name]);
    await waitUntil(() => /^namespaces: /m.test(first.out()) || first.child.exitCode !== null, { giveUpMs: GIVE_UP_MS, what: 'the first sandbox to start' });
    const second = startSandbox(['--check', '--hosts', '1', '--name', name]);
    const res = await second.done;
    assert.equal(res.code, 1);
    assert.match(second.err(), new RegExp(`the name "${name}" is taken: a sandbox is running as ${name}\\w+ \\(pid ${first.child.pid}`));
    first.child.kill('SIGINT');
    assert.equal((await first.done).code, 130);
    assert.deepEqual(await ours(name), []);
  });
});

describe('rudder sandbox: arguments and machines it cannot run on', () => {
  it('bad flags exit 2 with the sandbox usage', () => {
    for (const args of [['--hosts', '0'], ['--backend', 'carrier-pigeon'], ['--network', '10.0.0.0/33'], ['--network', '198.18.0.0/16'], ['--network', '10.0.0.0/24'], ['--name', 'Bad-Name'], ['--bogus'], ['extra'], ['--ipv6', '--ipv6-only'], ['--ipv6', '--ipv6-network', 'fd00::/200']]) {
      const r = spawnSync(BIN, ['sandbox', ...args], { env: cleanEnv(), encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^rudder sandbox: /, args.join(' '));
      assert.match(r.stderr, /Usage: sudo rudder sandbox/, args.join(' '));
      assert.equal(r.stdout, '');
    }
  });

  it('-help prints the usage and exits 0', () => {
    const r = spawnSync(BIN, ['sandbox', '-help'], { env: cleanEnv(), encoding: 'utf8' });
    assert.equal(r.status, 0);
    for (const f of ['hosts', 'backend', 'network', 'check']) assert.match(r.stdout, new RegExp(`^  -${f}\\b`, 'm'));
  });

  it('not root: says so and exits 1 before making anything', { skip: process.getuid?.() !== 0 && 'the setuid step needs root' }, (t) => {
    const asNobody = ['--reuid=65534', '--regid=65534', '--clear-groups'];
    const main = path.resolve(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js');
    const canRead = spawnSync('setpriv', [...asNobody, process.execPath, '-e', 'require(process.argv[1])', main], { env: cleanEnv() });
    if (canRead.status !== 0) {
      t.skip(`uid 65534 cannot load ${main} from this checkout (directory permissions)`);
      return;
    }
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', BIN, 'sandbox', '--check'], { env: cleanEnv(), encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /must run as root/);
  });

  it('etcd missing: says that ./build installs it', (t) => {
    // A PATH with every tool the sandbox needs except etcd.
    const dir = tempDir(t, 'rudder-sandbox-path-');
    for (const tool of ['node', 'sh', 'ip', 'ping', 'sysctl', 'setpriv', 'etcdctl']) {
      const found = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { encoding: 'utf8' }).stdout.trim();
      if (found) fs.symlinkSync(found, path.join(dir, tool));
    }
    const r = spawnSync(process.execPath, [BIN, 'sandbox', '--check'], { env: cleanEnv({ PATH: dir }), encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /etcd not found: \.\/build installs it/);
  });
});
