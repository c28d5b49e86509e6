/**
 * Small pieces shared by the topology modules (and re-exported by the test
 * helpers): polling with a give-up, free ports, temporary directories.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { TopologyError } from './exec';
import { sleep } from '../util/sleep';

export { sleep };

/** The checkout this code runs from (package.json beside bin/), walking up from dist/. */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', '..');
}

export interface WaitOptions {
  /**
   * When to give up. Generous on purpose: this only stops a broken run from
   * hanging forever on a loaded machine; it is never a claim about speed.
   */
  giveUpMs?: number;
  /** Pause between attempts. */
  intervalMs?: number;
  /** What we were waiting for, for the error message. */
  what?: string;
}

/**
 * Calls `probe` until it returns something other than undefined/false and
 * returns that. Exceptions from `probe` count as "not yet" (the last one is
 * kept as the cause), except a TopologyError with `fatal` set on it via
 * `giveUp()`, which ends the wait at once (e.g. the process we wait for died).
 */
export async function waitUntil<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  opts: WaitOptions = {},
): Promise<T> {
  const giveUpMs = opts.giveUpMs ?? 60_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + giveUpMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      if (e instanceof GiveUp) throw e.error;
      last = e;
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? `: last error: ${last.message}` : '';
      throw new TopologyError('E_INTERNAL', `gave up after ${giveUpMs} ms waiting for ${opts.what ?? 'a condition'}${why}`, {
        cause: last,
      });
    }
    await sleep(intervalMs);
  }
}

class GiveUp extends Error {
  constructor(readonly error: Error) {
    super(error.message);
  }
}

/** Thrown inside a `waitUntil` probe: stop waiting and reject with `error`. */
export function giveUp(error: Error): never {
  throw new GiveUp(error);
}

/**
 * A TCP port on `host` that was free a moment ago. Another process can take it
 * before we use it; callers that bind it (etcd) retry with a new one.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new TopologyError('E_INTERNAL', 'no free port'))));
    });
  });
}

/** Creates a fresh directory under the system temp dir. */
export function makeTempDir(prefix = 'rudder-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
