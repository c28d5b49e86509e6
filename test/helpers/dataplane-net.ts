/**
 * Test plumbing for the data plane e2e test: running commands, per-run
 * network namespaces that are removed however the test ends, a client for
 * dataplane-child, and IPv4 packet builders. Processes are ended by PID only.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseIp } from '../../src/ip/ipv4';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; never throws on a non-zero exit. */
export function run(cmd: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs and throws with the output if the command fails. */
export async function must(cmd: string, args: readonly string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export function ip4(s: string): number {
  const v = parseIp(s);
  if (v === null) throw new Error(`bad IPv4 ${s}`);
  return v;
}

/** Namespaces and child processes of one test run, torn down on every exit path. */
export class Sandbox {
  readonly tag = randomBytes(3).toString('hex');
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly onExit = (): void => this.cleanupSync();
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.cleanupSync();
    process.kill(process.pid, sig);
  };

  constructor() {
    process.on('exit', this.onExit);
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  async netns(suffix: string): Promise<string> {
    const name = `rdp-${this.tag}-${suffix}`;
    await must('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** Starts `node script args` inside `ns` (ip netns exec execs node: the PID is node's). */
  spawnIn(ns: string, script: string, args: readonly string[] = []): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.children.add(p);
    p.once('exit', () => this.children.delete(p));
    return p;
  }

  track(p: ChildProcess): void {
    this.children.add(p);
    p.once('exit', () => this.children.delete(p));
  }

  cleanupSync(): void {
    for (const c of this.children) {
      if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    this.children.clear();
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

export class ChildError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly errorName: string,
  ) {
    super(message);
  }
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { name: string; code: string; message: string };
}

/** Talks to test/helpers/dataplane-child.ts over JSON lines. */
export class DataPlaneChild {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly ready: Promise<void>;

  constructor(readonly proc: ChildProcess) {
    const stdout = proc.stdout;
    if (!stdout) throw new Error('child has no stdout');
    let ready!: () => void;
    this.ready = new Promise((r) => (ready = r));
    readline.createInterface({ input: stdout }).on('line', (line) => {
      let rep: Reply;
      try {
        rep = JSON.parse(line) as Reply;
      } catch {
        return;
      }
      if (rep.id === 0) return ready();
      const w = this.waiting.get(rep.id);
      if (!w) return;
      this.waiting.delete(rep.id);
      if (rep.ok) w.resolve(rep.result);
      else w.reject(new ChildError(rep.error?.message ?? 'error', rep.error?.code ?? '', rep.error?.name ?? ''));
    });
    proc.once('exit', (code, sig) => {
      for (const w of this.waiting.values()) w.reject(new Error(`data plane child exited (${code ?? sig})`));
      this.waiting.clear();
    });
  }

  static async start(sb: Sandbox, ns: string): Promise<DataPlaneChild> {
    const script = path.resolve(__dirname, 'dataplane-child.js');
    const c = new DataPlaneChild(sb.spawnIn(ns, script));
    await c.ready;
    return c;
  }

  request<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.stdin?.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }
}

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += (b[b.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A well-formed IPv4 packet (IHL 5, valid header checksum). */
export function ipv4Packet(o: { src: string; dst: string; ttl?: number; proto: number; payload: Buffer }): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + o.payload.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h[8] = o.ttl ?? 64;
  h[9] = o.proto;
  h.writeUInt32BE(ip4(o.src), 12);
  h.writeUInt32BE(ip4(o.dst), 16);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, o.payload]);
}

/** ICMP echo request with a valid ICMP checksum. */
export function icmpEcho(id: number, seq: number, data = Buffer.from('rudder-dataplane-test')): Buffer {
  const m = Buffer.alloc(8 + data.length);
  m[0] = 8;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  data.copy(m, 8);
  m.writeUInt16BE(checksum(m), 2);
  return m;
}

/** Recomputes the header checksum after a test edits header fields. */
export function fixHeaderChecksum(p: Buffer): Buffer {
  const ihl = ((p[0] ?? 0) & 0xf) * 4;
  p.writeUInt16BE(0, 10);
  p.writeUInt16BE(checksum(p.subarray(0, ihl)), 10);
  return p;
}
