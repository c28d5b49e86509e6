/**
 * The one socket of a facade instance, plus the error and encoding helpers the
 * per-object modules (links, addrs, routes, neigh) share. Keeping the socket
 * here lets each module stay a set of plain functions over `Conn`, so new
 * object kinds slot in without growing one large class.
 */
import { constants as osConstants } from 'os';
import { getSystemErrorName } from 'util';
// Deep imports: the package's index also loads nl80211, genl and wg (~1.4 MB of RSS the daemon never uses).
import { FlagsNew } from 'netlink/dist/constants';
import { createRtNetlink, type RtNetlinkSocket } from 'netlink/dist/rt/rt';
import { RudderError } from '../errors';
import { formatIp } from '../ip/ipv4';
import { ackErrno } from './wire';

/** A kernel-rejected request; `errno` is the symbolic name (EEXIST, ENODEV, ...). */
export class KernelError extends Error {
  readonly code: string;
  readonly errno: number | undefined;
  constructor(code: string, cause: unknown) {
    const num = (osConstants.errno as Record<string, number | undefined>)[code];
    super(`${code}${num === undefined ? '' : ` (errno ${num})`}`, { cause });
    this.name = 'KernelError';
    this.code = code;
    this.errno = num;
  }
}

/** The errno name of a failed request, if the kernel gave one. */
export function errnoOf(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur instanceof Error; i++) {
    if (cur instanceof KernelError) return cur.code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

// The netlink package reports kernel errors only as text: "Request rejected: EEXIST".
const REJECTED = /Request rejected: (E[A-Z0-9]+|-?\d+)/;

export const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;
export const CREATE_EXCL = FlagsNew.CREATE | FlagsNew.EXCL;
export const AF_INET = 2;
export const AF_BRIDGE = 7;

/**
 * The netlink package's request table (sequence numbers, reply callbacks,
 * keeping the socket referenced while a reply is due). Its methods are
 * `protected` in the package's types but are how its own `request` works;
 * `send` uses them so requests encoded by wire.ts share one sequence space
 * and one reply dispatch with the package's dumps.
 */
interface RequestTable {
  generateSeq(): number;
  makeRef(seq: number, cb: (err: Error | null, msgs?: ReadonlyArray<{ type: number; data: Buffer }>) => void): number;
  dropRef(seq: number): void;
  readonly socket: { send(msg: Uint8Array, options: undefined, cb: (e?: Error) => void): void };
}

function requestTable(sock: RtNetlinkSocket): RequestTable {
  const t = sock.socket as unknown as Partial<RequestTable>;
  if (typeof t.generateSeq !== 'function' || typeof t.makeRef !== 'function' || typeof t.dropRef !== 'function' || typeof t.socket?.send !== 'function') {
    throw new RudderError('E_NETLINK', 'netlink: the netlink package has no request table (generateSeq/makeRef/dropRef): unsupported package version');
  }
  return t as RequestTable;
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(errno < 0 ? errno : -errno);
  } catch {
    return String(errno);
  }
}

export class Conn {
  readonly sock: RtNetlinkSocket;
  private readonly table: RequestTable;
  private closed = false;

  constructor() {
    try {
      // Unreferenced (the package default): an idle facade never keeps node alive.
      this.sock = createRtNetlink();
    } catch (e) {
      throw new RudderError('E_NETLINK', `netlink: open rtnetlink socket: ${(e as Error).message}`, { cause: e });
    }
    this.table = requestTable(this.sock);
  }

  /**
   * Sends one request encoded by wire.ts (`build` gets the sequence number)
   * and waits for its ack. Errors as `call`; `what` is only evaluated on
   * failure, so a successful request allocates no description.
   */
  send(op: string, what: () => string, build: (seq: number) => Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new RudderError('E_NETLINK', `netlink: ${op} ${what()}: socket closed`));
    const t = this.table;
    const seq = t.generateSeq();
    const msg = build(seq);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (e: unknown): void => {
        if (settled) return;
        settled = true;
        t.dropRef(seq);
        if (e === null) resolve();
        else reject(wrapError(op, what(), e));
      };
      t.makeRef(seq, (err, msgs) => {
        if (err !== null) return finish(err);
        const first = msgs?.[0];
        const errno = first === undefined ? undefined : ackErrno(first.type, first.data);
        finish(errno === undefined || errno === 0 ? null : new KernelError(errnoName(errno), new Error(`Request rejected: ${errnoName(errno)}`)));
      });
      t.socket.send(msg, undefined, (e) => {
        if (e) finish(e);
      });
    });
  }

  /** Like `send`; the listed errnos mean "nothing to do" (false). */
  async sendTolerant(op: string, what: () => string, ok: readonly string[], build: (seq: number) => Buffer): Promise<boolean> {
    try {
      await this.send(op, what, build);
      return true;
    } catch (e) {
      const code = errnoOf(e);
      if (code !== undefined && ok.includes(code)) return false;
      throw e;
    }
  }

  /**
   * Runs one request; a failure becomes RudderError('E_NETLINK') naming the
   * operation and the object, with the kernel errno as cause.
   */
  async call<T>(op: string, what: string, fn: (s: RtNetlinkSocket) => Promise<T>): Promise<T> {
    if (this.closed) throw new RudderError('E_NETLINK', `netlink: ${op} ${what}: socket closed`);
    try {
      return await fn(this.sock);
    } catch (e) {
      throw wrapError(op, what, e);
    }
  }

  /** Like `call`, but the listed errnos mean "nothing to do" and yield `fallback`. */
  async callTolerant<T>(op: string, what: string, ok: readonly string[], fallback: T, fn: (s: RtNetlinkSocket) => Promise<T>): Promise<T> {
    try {
      return await this.call(op, what, fn);
    } catch (e) {
      const code = errnoOf(e);
      if (code !== undefined && ok.includes(code)) return fallback;
      throw e;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.socket.close();
  }
}

/** A failed request as RudderError('E_NETLINK') naming the operation and object, the kernel errno as cause. */
function wrapError(op: string, what: string, e: unknown): RudderError {
  let cause = e;
  if (!(e instanceof KernelError)) {
    const m = e instanceof Error ? REJECTED.exec(e.message) : null;
    if (m?.[1] !== undefined) cause = new KernelError(m[1], e);
  }
  const detail = cause instanceof KernelError ? cause.code : e instanceof Error ? e.message : String(e);
  return new RudderError('E_NETLINK', `netlink: ${op} ${what}: ${detail}`, { cause });
}

export function ipToBuf(ip: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip >>> 0, 0);
  return b;
}

export function bufToIp(b: Buffer | undefined): number | undefined {
  return b !== undefined && b.length === 4 ? b.readUInt32BE(0) : undefined;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function macToBuf(mac: string): Buffer {
  const m = mac.toLowerCase();
  if (!MAC_RE.test(m)) throw new RudderError('E_NETLINK', `netlink: invalid MAC address ${JSON.stringify(mac)}: expected aa:bb:cc:dd:ee:ff`);
  return Buffer.from(m.split(':').map((h) => parseInt(h, 16)));
}

export function bufToMac(b: Buffer | undefined): string | undefined {
  if (b === undefined || b.length !== 6) return undefined;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The package decodes known enum values to names; Rudder compares numbers. */
export function enumNum(mapping: Record<string, string | number>, v: string | number | undefined): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return v;
  const n = mapping[v];
  return typeof n === 'number' ? n : 0;
}

export function dev(index: number): string {
  return `ifindex ${index}`;
}

export { formatIp };
