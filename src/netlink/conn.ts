/**
 * The one socket of a facade instance, plus the error and encoding helpers the
 * per-object modules (links, addrs, routes, neigh) share. Keeping the socket
 * here lets each module stay a set of plain functions over `Conn`, so new
 * object kinds slot in without growing one large class.
 */
import { constants as osConstants } from 'os';
import { createRtNetlink, FlagsNew, type RtNetlinkSocket } from 'netlink';
import { RudderError } from '../errors';
import { formatIp } from '../ip/ipv4';

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

export class Conn {
  readonly sock: RtNetlinkSocket;
  private closed = false;

  constructor() {
    try {
      // Unreferenced (the package default): an idle facade never keeps node alive.
      this.sock = createRtNetlink();
    } catch (e) {
      throw new RudderError('E_NETLINK', `netlink: open rtnetlink socket: ${(e as Error).message}`, { cause: e });
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
      const m = e instanceof Error ? REJECTED.exec(e.message) : null;
      const cause = m?.[1] !== undefined ? new KernelError(m[1], e) : e;
      const detail = cause instanceof KernelError ? cause.code : e instanceof Error ? e.message : String(e);
      throw new RudderError('E_NETLINK', `netlink: ${op} ${what}: ${detail}`, { cause });
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
