/**
 * WireGuard's cross-platform status protocol (the "UAPI" of
 * wireguard.com/xplatform) on `/var/run/wireguard/<device>.sock`, so that
 * `wg show rudder-wg` (wireguard-tools) reads a Rudder host like a
 * wireguard-go one; `rudder peers` reads the same socket. This module owns
 * the text format both ways: `formatGet` (the daemon's answer, from the data
 * plane's peers()) and `parseGet` (the client's reading of it), both pure,
 * plus the socket server and the client.
 *
 * Protocol: a unix stream socket; a request is `get=1\n\n` or `set=1\n`
 * followed by `key=value` lines and a blank line; each is answered, and a
 * connection may carry several. `get` answers the device's lines
 * (`private_key`, `listen_port`), then per peer `public_key` (starts the
 * peer), `protocol_version`, `endpoint`, `last_handshake_time_sec/nsec`,
 * `tx_bytes`, `rx_bytes`, `persistent_keepalive_interval`, `allowed_ip`...,
 * and ends with `errno=0` and a blank line. Keys are hex. Errors are sent
 * as a negative errno, as wireguard-go does and wg(8) reads them. `set` is
 * refused (`errno=-1`, EPERM): Rudder's peers follow the leases in etcd.
 *
 * Secrets: `private_key` is sent (wg(8) derives the interface's public key
 * from it, as it does with wireguard-go), so the socket is 0600 in a
 * directory writable by root only, never followed through a symlink. The
 * key is read from the key file per request (the backend keeps no copy)
 * and written from a Buffer that is wiped once sent. The PSK is not sent.
 *
 * Runs on the daemon's event loop (control plane; the data path never
 * waits for it). A stale socket file (no one listening) is replaced at
 * start; one that answers is left alone (another daemon serves it).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { RudderError, describeError } from '../../errors';
import { formatCidr } from '../../ip/ipv4';
import { formatCidr6 } from '../../ip/ipv6';
import type { Logger } from '../../log';
import type { WireGuardDataPlane, WireGuardPeerStatus } from '../../dataplane/native';
import type { StartGuard } from '../common';
import { formatEndpoint } from '../tun-network';
import type { PeerStatus } from '../types';
import { parseKeyFile, publicKeyOf } from './key';

/** Where wg(8) looks (wireguard-tools' RUNSTATEDIR/wireguard). */
export const DEFAULT_UAPI_DIR = '/var/run/wireguard';
/**
 * Test only: the directory of the status socket instead of
 * /var/run/wireguard, so that daemons sharing one file system (test hosts
 * in namespaces) do not take each other's socket. Read by the daemon and
 * by `rudder peers`; not a flag on purpose.
 */
export const UAPI_DIR_ENV = 'RUDDER_TEST_UAPI_DIR';

export function uapiDir(env: Readonly<Record<string, string | undefined>>): string {
  const d = env[UAPI_DIR_ENV];
  return d !== undefined && d !== '' ? d : DEFAULT_UAPI_DIR;
}

export function uapiSocketPath(dir: string, device: string): string {
  return path.join(dir, `${device}.sock`);
}

/** errno values of the answers (sent negated). */
export const EPERM = 1;
export const EIO = 5;
export const EINVAL = 22;

/** What a `get` reports. */
export interface UapiDevice {
  /** This host's private key, only when it is known to be the one in use. */
  readonly privateKey?: Buffer | undefined;
  readonly listenPort: number;
  /** The network's PersistentKeepaliveInterval (every peer has it). */
  readonly persistentKeepalive: number;
  readonly peers: readonly WireGuardPeerStatus[];
}

const HEX = '0123456789abcdef';

/** `key=<hex>\n` written straight into `out` at `at` (no string holds the bytes); returns the new offset. */
function hexLine(out: Buffer, at: number, key: string, bytes: Buffer): number {
  at += out.write(`${key}=`, at, 'latin1');
  for (const b of bytes) {
    out[at++] = HEX.charCodeAt(b >> 4);
    out[at++] = HEX.charCodeAt(b & 15);
  }
  out[at++] = 0x0a;
  return at;
}

/**
 * The answer to `get=1` (pure). A Buffer because it may hold the private
 * key: the caller wipes it once written.
 */
export function formatGet(d: UapiDevice): Buffer {
  const peers: string[] = [];
  for (const p of d.peers) {
    const ms = Math.max(0, Math.floor(p.latestHandshakeMs));
    const lines = [
      `public_key=${p.publicKey.toString('hex')}`,
      'protocol_version=1',
      `endpoint=${formatEndpoint(p.endpoint.ip, p.endpoint.ip6, p.endpoint.port)}`,
      `last_handshake_time_sec=${Math.floor(ms / 1000)}`,
      `last_handshake_time_nsec=${(ms % 1000) * 1_000_000}`,
      `tx_bytes=${p.txBytes}`,
      `rx_bytes=${p.rxBytes}`,
      `persistent_keepalive_interval=${d.persistentKeepalive}`,
      ...p.allowedIps.map((a) => `allowed_ip=${formatCidr(a)}`),
      ...(p.allowedIps6 ?? []).map((a) => `allowed_ip=${formatCidr6(a)}`),
    ];
    peers.push(lines.join('\n') + '\n');
  }
  const tail = `listen_port=${d.listenPort}\n${peers.join('')}errno=0\n\n`;
  const key = d.privateKey;
  const out = Buffer.alloc((key ? 'private_key=\n'.length + 2 * key.length : 0) + Buffer.byteLength(tail, 'latin1'));
  let at = key ? hexLine(out, 0, 'private_key', key) : 0;
  at += out.write(tail, at, 'latin1');
  return out.subarray(0, at);
}

/** An answer carrying only an error (get or set). */
export function formatErrno(errno: number): string {
  return `errno=${errno === 0 ? 0 : -Math.abs(errno)}\n\n`;
}

/** One peer as `parseGet` reads it. */
export interface UapiPeerStatus {
  /** base64, as in leases and `wg show`. */
  publicKey: string;
  /** IP:PORT, or null when none is set. */
  endpoint: string | null;
  allowedIps: string[];
  /** Wall-clock ms of the latest handshake; 0 = none yet. */
  latestHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number;
}

export interface UapiStatus {
  /** The device's private key if sent (the caller derives the public key and wipes it). */
  privateKey?: Buffer;
  listenPort?: number;
  peers: UapiPeerStatus[];
}

function uapiError(message: string, cause?: unknown): RudderError {
  return new RudderError('E_UAPI', message, cause === undefined ? undefined : { cause });
}

const DIGITS = /^[0-9]+$/;

function num(key: string, value: string): number {
  if (!DIGITS.test(value)) throw uapiError(`status answer: ${key}=${JSON.stringify(value)}: expected a decimal number`);
  return Number(value);
}

function key32(key: string, value: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(value)) throw uapiError(`status answer: ${key}: expected 64 lowercase hex digits`);
  return Buffer.from(value, 'hex');
}

/**
 * Reads the answer to `get=1` (pure): the lines up to the blank line, which
 * must end with `errno=0`. Unknown keys are skipped (newer protocol
 * versions add some); a malformed known one is an E_UAPI error.
 */
export function parseGet(text: string): UapiStatus {
  const out: UapiStatus = { peers: [] };
  let peer: UapiPeerStatus | undefined;
  let errno: number | undefined;
  let ended = false;
  let sec = 0;
  let nsec = 0;
  const closePeer = (): void => {
    if (peer) peer.latestHandshakeMs = sec * 1000 + Math.floor(nsec / 1_000_000);
    sec = 0;
    nsec = 0;
  };
  const lines = text.split('\n');
  lines.pop(); // after the last newline: not a line
  for (const line of lines) {
    if (line === '') {
      ended = true;
      break;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw uapiError(`status answer: line ${JSON.stringify(line.slice(0, 80))}: expected key=value`);
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    if (k === 'errno') {
      if (!/^-?[0-9]+$/.test(v)) throw uapiError(`status answer: errno=${JSON.stringify(v)}: expected a number`);
      errno = Math.abs(Number(v));
    } else if (k === 'public_key') {
      closePeer();
      peer = { publicKey: key32(k, v).toString('base64'), endpoint: null, allowedIps: [], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, persistentKeepalive: 0 };
      out.peers.push(peer);
    } else if (peer === undefined) {
      if (k === 'private_key') out.privateKey = key32(k, v);
      else if (k === 'listen_port') out.listenPort = num(k, v);
    } else if (k === 'endpoint') peer.endpoint = v;
    else if (k === 'allowed_ip') peer.allowedIps.push(v);
    else if (k === 'last_handshake_time_sec') sec = num(k, v);
    else if (k === 'last_handshake_time_nsec') nsec = num(k, v);
    else if (k === 'rx_bytes') peer.rxBytes = num(k, v);
    else if (k === 'tx_bytes') peer.txBytes = num(k, v);
    else if (k === 'persistent_keepalive_interval') peer.persistentKeepalive = num(k, v);
  }
  closePeer();
  if (!ended) throw uapiError('status answer ended without its blank line');
  if (errno === undefined) throw uapiError('status answer has no errno line');
  if (errno !== 0) throw uapiError(`status answer: errno=${errno}`);
  return out;
}

/** What one connection asks of the server. */
export interface UapiHandlers {
  /** The answer to `get=1` (from formatGet); wiped after it is written. */
  get(): Buffer;
  /** A `set` request arrived (refused); the key names it carried, values never kept. */
  set(keys: readonly string[]): void;
}

/** Longest line a client may send (a set's allowed_ip or key lines are < 100 bytes). */
export const MAX_LINE = 4096;

/**
 * One connection's protocol state (pure: bytes in, answers out), so the
 * framing is tested without sockets. `close` after a line that is no
 * request, a line over MAX_LINE, or `get=1` not followed by a blank line.
 */
export class UapiSession {
  private buf = '';
  private state: 'op' | 'get' | 'set' = 'op';
  private setKeys = new Set<string>();

  constructor(private readonly h: UapiHandlers) {}

  feed(chunk: string): { out: Array<Buffer | string>; close: boolean } {
    const out: Array<Buffer | string> = [];
    this.buf += chunk;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) return { out, close: this.buf.length > MAX_LINE };
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.length > MAX_LINE) return { out, close: true };
      switch (this.state) {
        case 'op':
          if (line === 'get=1') this.state = 'get';
          else if (line === 'set=1') this.state = 'set';
          else return { out, close: true };
          break;
        case 'get':
          this.state = 'op';
          if (line !== '') {
            out.push(formatErrno(EINVAL));
            return { out, close: true };
          }
          out.push(this.answerGet());
          break;
        case 'set':
          if (line !== '') {
            const eq = line.indexOf('=');
            if (this.setKeys.size < 16) this.setKeys.add(eq < 0 ? '?' : line.slice(0, eq).slice(0, 40));
            break;
          }
          this.state = 'op';
          this.h.set([...this.setKeys]);
          this.setKeys = new Set();
          out.push(formatErrno(EPERM));
          break;
      }
    }
  }

  private answerGet(): Buffer | string {
    try {
      return this.h.get();
    } catch {
      return formatErrno(EIO);
    }
  }
}

export interface UapiServer {
  /** The socket's path. */
  readonly path: string;
  /** Stops listening, ends open connections, removes the socket file (if it is still ours). */
  close(): Promise<void>;
}

export interface UapiServeOptions {
  dir: string;
  device: string;
  log: Logger;
  /** Builds one `get` answer (formatGet); may throw (answered errno=-5). */
  get(): Buffer;
}

/** How long a connection may stay silent before it is closed. */
const IDLE_MS = 10_000;

function isErrno(e: unknown, code: string): boolean {
  return (e as { code?: unknown } | null)?.code === code;
}

/** Creates the directory 0700 if missing; refuses a symlink, another owner's, or one others may write. */
function checkDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw uapiError(`cannot create ${dir}: ${describeError(e)}`, e);
  }
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw uapiError(`${dir} is not a directory (a symlink is never followed): left alone`);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) throw uapiError(`${dir} belongs to uid ${st.uid}, not to this process (uid ${uid}): left alone`);
  if ((st.mode & 0o022) !== 0) throw uapiError(`${dir} is writable by others (mode ${(st.mode & 0o777).toString(8)}): left alone`);
}

/** Resolves true when something accepts a connection on `file`, false on ECONNREFUSED; other errors throw. */
function answers(file: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(file);
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(true); // accepted but silent: someone holds it
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', (e) => (isErrno(e, 'ECONNREFUSED') ? resolve(false) : reject(e)));
  });
}

/** Removes a stale socket (nobody listening) or a symlink at `file`; refuses anything else. */
async function clearStale(file: string, log: Logger): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw uapiError(`cannot inspect ${file}: ${describeError(e)}`, e);
  }
  if (st.isSocket()) {
    if (await answers(file)) throw uapiError(`${file} is served by another process: left alone`);
    log.info('wireguard: replacing a stale status socket', { socket: file });
  } else if (st.isSymbolicLink()) {
    log.warn('wireguard: removing a symlink where the status socket goes (never followed)', { socket: file });
  } else {
    throw uapiError(`${file} exists and is not a socket: left alone`);
  }
  fs.unlinkSync(file); // unlink never follows a symlink
}

/**
 * Serves the status protocol on `<dir>/<device>.sock`, mode 0600. Throws
 * E_UAPI when it cannot (the caller logs it and runs without).
 */
export async function serveUapi(o: UapiServeOptions): Promise<UapiServer> {
  const file = uapiSocketPath(o.dir, o.device);
  if (Buffer.byteLength(file) > 107) throw uapiError(`${file}: a unix socket path has at most 107 bytes`);
  checkDir(o.dir);
  await clearStale(file, o.log);
  const conns = new Set<net.Socket>();
  const handlers: UapiHandlers = {
    get: () => o.get(),
    set: (keys) => o.log.warn("wireguard: refused a status socket 'set' (errno=-1): Rudder's peers follow the leases in etcd, change those instead", { keys: keys.join(',') }),
  };
  const server = net.createServer((c) => {
    conns.add(c);
    c.setEncoding('latin1');
    c.setTimeout(IDLE_MS, () => c.destroy());
    c.on('close', () => conns.delete(c));
    c.on('error', () => c.destroy());
    const session = new UapiSession(handlers);
    c.on('data', (chunk: string) => {
      const { out, close } = session.feed(chunk);
      for (const x of out) {
        if (typeof x === 'string') c.write(x);
        else c.write(x, () => x.fill(0));
      }
      if (close) c.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((e: unknown) => {
    throw uapiError(`cannot listen on ${file}: ${describeError(e)}`, e);
  });
  let ino: number;
  try {
    fs.chmodSync(file, 0o600);
    ino = fs.lstatSync(file).ino;
  } catch (e) {
    server.close();
    throw uapiError(`cannot restrict ${file} to root: ${describeError(e)}`, e);
  }
  server.on('error', (e) => o.log.warn('wireguard: status socket error', { socket: file, error: describeError(e) }));
  server.unref(); // never what keeps the process alive
  let closing: Promise<void> | undefined;
  return {
    path: file,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of conns) c.destroy();
        try {
          if (fs.lstatSync(file).ino === ino) fs.unlinkSync(file);
        } catch {
          // already gone
        }
      });
      return closing;
    },
  };
}

/**
 * Client side: sends `get=1` to the socket and returns the answer text (up
 * to and with its blank line). E_UAPI on a missing socket, no answer within
 * `timeoutMs`, or a connection closed early; `cause` keeps the errno.
 */
export function queryUapi(file: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    let done = false;
    const finish = (e: RudderError | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (e) reject(e);
      else resolve(text);
    };
    const s = net.createConnection(file);
    const timer = setTimeout(() => finish(uapiError(`${file}: no answer within ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('latin1');
    s.once('connect', () => s.write('get=1\n\n'));
    s.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n\n');
      if (end >= 0 || text.startsWith('\n')) {
        text = text.slice(0, end + 2);
        finish(null);
      } else if (text.length > 16 << 20) finish(uapiError(`${file}: answer larger than 16 MiB`));
    });
    s.once('end', () => finish(uapiError(`${file}: connection closed before the answer ended`)));
    s.once('error', (e) => finish(uapiError(`${file}: ${describeError(e)}`, e)));
  });
}

// ------------------------------------------------- the backend's side

/** The key file's key if it is the one in use (its public key is `publicKey`); the caller wipes it. */
function keyInUse(keyFile: string, publicKey: string): Buffer | undefined {
  let data: Buffer | undefined;
  let key: Buffer | undefined;
  try {
    data = fs.readFileSync(keyFile);
    key = parseKeyFile(keyFile, data);
    if (publicKeyOf(key) === publicKey) return key;
    key.fill(0);
    return undefined;
  } catch {
    key?.fill(0);
    return undefined; // the answer goes without private_key: wg show prints no interface public key
  } finally {
    data?.fill(0);
  }
}

export interface StatusSocketOptions {
  /** Where UAPI_DIR_ENV is read. */
  env: Readonly<Record<string, string | undefined>>;
  dev: string;
  dp: Pick<WireGuardDataPlane, 'peers'>;
  keyFile: string;
  /** The public key the data plane uses now (base64). */
  publicKey: () => string;
  port: number;
  persistentKeepalive: number;
}

/**
 * Serves the status socket for a started wireguard backend and registers
 * its removal with `start`. A socket that cannot be served is logged and
 * the backend runs without it (status never stops the network).
 */
export async function startStatusSocket(start: StartGuard, log: Logger, o: StatusSocketOptions): Promise<void> {
  const get = (): Buffer => {
    const key = keyInUse(o.keyFile, o.publicKey());
    try {
      return formatGet({ privateKey: key, listenPort: o.port, persistentKeepalive: o.persistentKeepalive, peers: o.dp.peers() });
    } finally {
      key?.fill(0);
    }
  };
  try {
    const server = await serveUapi({ dir: uapiDir(o.env), device: o.dev, log, get });
    start.undo('remove the status socket', () => server.close());
    log.info('wireguard: status socket ready (wg show, rudder peers)', { socket: server.path });
  } catch (e) {
    log.warn('wireguard: no status socket: wg show and rudder peers will not see this host', { error: describeError(e) });
  }
}

/** The data plane's peers as the metrics report them (Network.peerStatus). */
export function peerReport(peers: readonly WireGuardPeerStatus[]): PeerStatus[] {
  return peers.map((p) => ({
    publicKey: p.publicKey.toString('base64'),
    endpoint: formatEndpoint(p.endpoint.ip, p.endpoint.ip6, p.endpoint.port),
    allowedIps: [...p.allowedIps.map((a) => formatCidr(a)), ...(p.allowedIps6 ?? []).map((a) => formatCidr6(a))],
    latestHandshakeMs: p.latestHandshakeMs,
    rxBytes: p.rxBytes,
    txBytes: p.txBytes,
  }));
}
