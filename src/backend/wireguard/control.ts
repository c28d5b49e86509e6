/**
 * The wireguard backend's control socket: a unix socket beside the key file
 * (`<key file>.sock`, mode 0600, in the key file's root-only directory) on
 * which `rudder wireguard rotate-key` asks the running daemon to rotate its
 * key. The command finds the daemon by the key file it shares with it (the
 * same -wireguard-key-file flag), so no PID file is needed, and it gets the
 * outcome back: the new public key, or the error and its code.
 *
 * Protocol: the client sends one line (`rotate-key`), the server answers one
 * JSON line (`{"ok":true,"publicKey":"..."}` or
 * `{"ok":false,"code":"E_...","error":"..."}`) and closes.
 *
 * Runs on the daemon's event loop; the server is unref'd (it never keeps a
 * process alive on its own).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { RudderError, describeError, isRudderError, type ErrorCode } from '../../errors';
import type { Logger } from '../../log';

export const ROTATE_KEY = 'rotate-key';
const MAX_LINE = 256;

export function controlSocketOf(keyFile: string): string {
  return `${keyFile}.sock`;
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** Removes a socket left by an earlier run (never anything else). */
function removeStale(path: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new RudderError('E_BACKEND', `wireguard: control socket path ${path} exists and is not a socket`);
  fs.rmSync(path, { force: true });
}

/** Serves `rotate-key` on `<keyFile>.sock` with `rotate` (which returns the new public key). */
export async function serveControl(keyFile: string, rotate: () => Promise<string>, log: Logger): Promise<ControlServer> {
  const path = controlSocketOf(keyFile);
  removeStale(path);
  const server = net.createServer((conn) => {
    let buf = '';
    let answered = false;
    const answer = (o: Record<string, unknown>): void => {
      answered = true;
      conn.end(`${JSON.stringify(o)}\n`);
    };
    conn.setEncoding('utf8');
    conn.on('error', () => undefined); // a client that went away
    conn.on('data', (chunk: string) => {
      if (answered) return;
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0 && buf.length <= MAX_LINE) return;
      const cmd = (nl < 0 ? buf : buf.slice(0, nl)).trim();
      if (cmd !== ROTATE_KEY) {
        answer({ ok: false, code: 'E_FLAG', error: `unknown request ${JSON.stringify(cmd.slice(0, 40))}: expected ${ROTATE_KEY}` });
        return;
      }
      rotate().then(
        (publicKey) => answer({ ok: true, publicKey }),
        (e: unknown) => {
          const code = isRudderError(e) ? e.code : 'E_INTERNAL';
          log.error('wireguard key rotation failed; the old key keeps running', { via: 'rudder wireguard rotate-key', code, error: describeError(e) });
          answer({ ok: false, code, error: describeError(e) });
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => log.warn('wireguard: control socket error', { path, error: describeError(e) }));
  server.unref();
  fs.chmodSync(path, 0o600);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          fs.rmSync(path, { force: true });
          resolve();
        });
      }),
  };
}

/**
 * `rudder wireguard rotate-key`: asks the daemon whose key file is `keyFile`
 * to rotate; returns the new public key. Throws RudderError with the
 * daemon's code, or E_BACKEND when no daemon answers.
 */
export async function requestRotate(keyFile: string, timeoutMs = 30_000): Promise<string> {
  const path = controlSocketOf(keyFile);
  const reply = await new Promise<string>((resolve, reject) => {
    const conn = net.connect(path);
    let buf = '';
    conn.setEncoding('utf8');
    conn.setTimeout(timeoutMs, () => conn.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    conn.on('connect', () => conn.write(`${ROTATE_KEY}\n`));
    conn.on('data', (c: string) => (buf += c));
    conn.on('end', () => resolve(buf));
    conn.on('error', (e: NodeJS.ErrnoException) => {
      const down = e.code === 'ENOENT' || e.code === 'ECONNREFUSED';
      reject(
        new RudderError(
          'E_BACKEND',
          down
            ? `no running wireguard daemon uses the key file ${keyFile} (nothing listens on ${path}): start it, or pass the daemon's -wireguard-key-file`
            : `control socket ${path}: ${e.message}`,
          { cause: e },
        ),
      );
    });
  });
  let o: { ok?: unknown; publicKey?: unknown; code?: unknown; error?: unknown };
  try {
    o = JSON.parse(reply) as typeof o;
  } catch (e) {
    throw new RudderError('E_BACKEND', `control socket ${path} answered ${JSON.stringify(reply.slice(0, 80))}, not JSON`, { cause: e });
  }
  if (o.ok === true && typeof o.publicKey === 'string') return o.publicKey;
  const code = (typeof o.code === 'string' ? o.code : 'E_BACKEND') as ErrorCode;
  throw new RudderError(code, `the daemon could not rotate its key (the old key keeps running): ${typeof o.error === 'string' ? o.error : 'no reason given'}`);
}
