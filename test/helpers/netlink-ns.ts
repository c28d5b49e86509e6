/**
 * A throw-away network namespace for netlink tests, and a client for the
 * facade child running inside it. The namespace is removed by `destroy()`
 * and, whatever happens, by exit and signal hooks; the child is ended by PID.
 */
import { execFileSync, spawn, type ChildProcess } from 'child_process';
import { randomBytes } from 'crypto';
import { join } from 'path';
import { createInterface } from 'readline';

/** JSON with bigints (IPv6 addresses) as `{"$bigint":"<decimal>"}`: the facade child's line protocol. */
export const bigJson = {
  stringify: (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? { $bigint: x.toString() } : x)),
  parse: (s: string): unknown =>
    JSON.parse(s, (_k, x: unknown) => {
      if (x !== null && typeof x === 'object' && Object.keys(x).length === 1 && typeof (x as { $bigint?: unknown }).$bigint === 'string') return BigInt((x as { $bigint: string }).$bigint);
      return x;
    }),
};

export interface TestNs {
  readonly name: string;
  /** Runs `ip -n <ns> ...args` and returns stdout. */
  ip(...args: string[]): string;
  /** Runs `ip -n <ns> -j ...args` and parses the JSON. */
  ipJson<T = Array<Record<string, unknown>>>(...args: string[]): T;
  /** Runs `bridge -n <ns> ...args` and returns stdout. */
  bridge(...args: string[]): string;
  /** Runs `bridge -n <ns> -j ...args` and parses the JSON. */
  bridgeJson<T = Array<Record<string, unknown>>>(...args: string[]): T;
  destroy(): void;
}

const live = new Set<string>();
const children = new Set<ChildProcess>();
let hooked = false;

function cleanupAll(): void {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  children.clear();
  for (const ns of live) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupAll();
      process.kill(process.pid, sig);
    });
  }
}

export function createTestNs(prefix = 'rnl'): TestNs {
  hook();
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  live.add(name);
  const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    name,
    ip: (...args) => run('ip', ['-n', name, ...args]),
    ipJson: <T>(...args: string[]) => JSON.parse(run('ip', ['-n', name, '-j', ...args]) || '[]') as T,
    bridge: (...args) => run('bridge', ['-n', name, ...args]),
    bridgeJson: <T>(...args: string[]) => JSON.parse(run('bridge', ['-n', name, '-j', ...args]) || '[]') as T,
    destroy: () => {
      if (!live.delete(name)) return;
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    },
  };
}

export interface ChildError extends Error {
  code: string;
  errno: string | null;
}

export interface FacadeChild {
  call<T = unknown>(op: string, ...args: unknown[]): Promise<T>;
  close(): Promise<void>;
}

/** Starts test/helpers/netlink-child.js inside the namespace. */
export function startFacadeChild(ns: TestNs): FacadeChild {
  const script = join(__dirname, 'netlink-child.js');
  const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, script], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(child);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exited = false;
  const exitedP = new Promise<void>((resolve) =>
    child.on('exit', (code, sig) => {
      exited = true;
      children.delete(child);
      for (const p of pending.values()) p.reject(new Error(`netlink child exited (code ${code}, signal ${sig})`));
      pending.clear();
      resolve();
    }),
  );
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const msg = bigJson.parse(line) as { id: number; ok: boolean; value?: unknown; error?: { code: string; message: string; errno: string | null } };
    const p = pending.get(msg.id);
    if (p === undefined) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.value);
    else {
      const err = new Error(msg.error?.message ?? 'unknown error') as ChildError;
      err.code = msg.error?.code ?? 'E_UNKNOWN';
      err.errno = msg.error?.errno ?? null;
      p.reject(err);
    }
  });
  return {
    call<T>(op: string, ...args: unknown[]): Promise<T> {
      if (exited) return Promise.reject(new Error('netlink child has exited'));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.stdin?.write(bigJson.stringify({ id, op, args }) + '\n');
      });
    },
    async close(): Promise<void> {
      if (!exited) child.stdin?.end(); // the child exits when its stdin closes
      await exitedP;
    },
  };
}
