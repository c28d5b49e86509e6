/**
 * The one socket of a facade instance, plus the error and encoding helpers the
 * per-object modules (links, addrs, routes, neigh) share. Keeping the socket
 * here lets each module stay a set of plain functions over `Conn`, so new
 * object kinds slot in without growing one large class.
 */
import { constants as osConstants } from 'os';
import { RudderError } from '../errors';
import { formatIp } from '../ip/ipv4';
import * as rt from './rtmsg';
import { errnoName, RtnlSocket } from './socket';
import { NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDRLEN } from './wire';

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

// Errors of other origins that still carry the kernel's text: "Request rejected: EEXIST".
const REJECTED = /Request rejected: (E[A-Z0-9]+|-?\d+)/;

// include/uapi/linux/netlink.h
const NLM_F_DUMP = 0x300; // NLM_F_ROOT | NLM_F_MATCH
const NLM_F_EXCL = 0x200;
const NLM_F_REPLACE = 0x100;
const NLM_F_CREATE = 0x400;
const NLMSG_NOOP = 1;
const NLMSG_DONE = 3;
// include/uapi/linux/rtnetlink.h
const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
const RTM_GETROUTE = 26;
const RTM_GETNEIGH = 30;

export const CREATE_REPLACE = NLM_F_CREATE | NLM_F_REPLACE;
export const CREATE_EXCL = NLM_F_CREATE | NLM_F_EXCL;
export const AF_INET = 2;
export const AF_BRIDGE = 7;

/** One reply message: its type and body (after the 16-byte header). */
interface Reply {
  readonly type: number;
  readonly data: Buffer;
}

/** A request waiting for its replies: collected until the ack, the kernel's error or the dump's end. */
interface Pending {
  readonly replies: Reply[];
  readonly done: (err: Error | null, replies: Reply[]) => void;
}

/** Extra nlmsg_flags of a request (CREATE, EXCL, REPLACE...). */
interface RequestOptions {
  readonly flags?: number;
}

function rejected(errno: number): KernelError {
  const name = errnoName(errno);
  return new KernelError(name, new Error(`Request rejected: ${name}`));
}

/**
 * The requests links.ts, addrs.ts, routes.ts and neigh.ts make through
 * `Conn.call`, by object (rtmsg.ts encodes and decodes the bodies). Each
 * resolves with the kernel's reply messages: none for a change (the ack), the
 * object for a lookup, every object for a dump.
 */
export class RtRequests {
  constructor(private readonly c: Conn) {}

  getLinks(): Promise<rt.LinkMessage[]> {
    return this.c.request(RTM_GETLINK, NLM_F_DUMP, rt.formatLink({}), rt.parseLink);
  }
  getLink(data: rt.LinkData, attrs?: rt.LinkAttrs): Promise<rt.LinkMessage[]> {
    return this.c.request(RTM_GETLINK, 0, rt.formatLink(data, attrs), rt.parseLink);
  }
  newLink(data: rt.LinkData, attrs?: rt.LinkAttrs, options?: RequestOptions): Promise<rt.LinkMessage[]> {
    return this.c.request(RTM_NEWLINK, options?.flags ?? 0, rt.formatLink(data, attrs), rt.parseLink);
  }
  setLink(data: rt.LinkData, attrs?: rt.LinkAttrs, options?: RequestOptions): Promise<rt.LinkMessage[]> {
    return this.c.request(RTM_SETLINK, options?.flags ?? 0, rt.formatLink(data, attrs), rt.parseLink);
  }
  delLink(data: rt.LinkData, attrs?: rt.LinkAttrs): Promise<rt.LinkMessage[]> {
    return this.c.request(RTM_DELLINK, 0, rt.formatLink(data, attrs), rt.parseLink);
  }
  getAddresses(data: rt.AddressData = {}, attrs?: rt.AddressAttrs): Promise<rt.AddressMessage[]> {
    return this.c.request(RTM_GETADDR, NLM_F_DUMP, rt.formatAddress(data, attrs), rt.parseAddress);
  }
  newAddress(data: rt.AddressData, attrs?: rt.AddressAttrs, options?: RequestOptions): Promise<rt.AddressMessage[]> {
    return this.c.request(RTM_NEWADDR, options?.flags ?? 0, rt.formatAddress(data, attrs), rt.parseAddress);
  }
  delAddress(data: rt.AddressData, attrs?: rt.AddressAttrs): Promise<rt.AddressMessage[]> {
    return this.c.request(RTM_DELADDR, 0, rt.formatAddress(data, attrs), rt.parseAddress);
  }
  getRoutes(data: rt.RouteData = {}, attrs?: rt.RouteAttrs): Promise<rt.RouteMessage[]> {
    return this.c.request(RTM_GETROUTE, NLM_F_DUMP, rt.formatRoute(data, attrs), rt.parseRouteMessage);
  }
  getNeighbors(data: rt.NeighborData = {}, attrs?: rt.NeighborAttrs): Promise<rt.NeighborMessage[]> {
    return this.c.request(RTM_GETNEIGH, NLM_F_DUMP, rt.formatNeighbor(data, attrs), rt.parseNeighbor);
  }
}

/**
 * The facade's one request socket (native/netlink/rtnl.c through socket.ts)
 * and its request table: sequence numbers, the replies of each request, and
 * keeping node's event loop alive only while replies are due.
 */
export class Conn {
  private readonly sock: RtnlSocket;
  private readonly requests = new RtRequests(this);
  private readonly pending = new Map<number, Pending>();
  private seq = 1;
  private closed = false;

  constructor() {
    this.sock = new RtnlSocket({ onDatagram: (d) => this.receive(d), onLost: (why) => this.failAll(`replies lost: ${why}`) });
  }

  private nextSeq(): number {
    let s = this.seq;
    while (this.pending.has(s)) s = (s % 0xffffffff) + 1;
    this.seq = (s % 0xffffffff) + 1;
    return s;
  }

  /** Splits one datagram and hands each message to the request of its sequence number; others are dropped. */
  private receive(d: Buffer): void {
    let at = 0;
    while (at + NLMSG_HDRLEN <= d.length) {
      const len = d.readUInt32LE(at);
      if (len < NLMSG_HDRLEN || at + len > d.length) {
        this.failAll(`undecodable reply: bad message length ${len} at ${at}`);
        return;
      }
      const type = d.readUInt16LE(at + 4);
      const p = this.pending.get(d.readUInt32LE(at + 8));
      const body = d.subarray(at + NLMSG_HDRLEN, at + len);
      at += (len + 3) & ~3;
      if (p === undefined || type === NLMSG_NOOP) continue;
      if (type === NLMSG_ERROR || type === NLMSG_DONE) {
        // An ack is an error message with errno 0; a dump ends with DONE (its errno, if any, after the header).
        const errno = body.length >= 4 ? body.readInt32LE(0) : type === NLMSG_DONE ? 0 : -71; // EPROTO
        p.done(errno === 0 ? null : rejected(errno), p.replies);
      } else {
        // A dump's parts (NLM_F_MULTI) and a lookup's one reply alike: DONE or the ack ends them.
        p.replies.push({ type, data: body });
      }
    }
  }

  private failAll(why: string): void {
    const e = new RudderError('E_NETLINK', `netlink: ${why}`);
    for (const p of [...this.pending.values()]) p.done(e, []);
  }

  /**
   * Sends `msg` (its sequence number `seq`, built by the caller) and resolves
   * with the reply messages once the kernel has acked it or ended its dump;
   * rejects with KernelError when the kernel refused it.
   */
  private exchange(seq: number, msg: Buffer): Promise<Reply[]> {
    return new Promise<Reply[]>((resolve, reject) => {
      this.pending.set(seq, {
        replies: [],
        done: (err, replies) => {
          if (!this.pending.delete(seq)) return;
          if (this.pending.size === 0) this.sock.ref(false);
          if (err === null) resolve(replies);
          else reject(err);
        },
      });
      if (this.pending.size === 1) this.sock.ref(true);
      const rc = this.sock.send(msg);
      if (rc !== 0) this.pending.get(seq)?.done(new KernelError(errnoName(rc), new Error(`send: ${errnoName(rc)}`)), []);
    });
  }

  /** One request by object (RtRequests): the header is added here, each reply decoded with `parse`. */
  async request<M>(type: number, flags: number, body: Buffer, parse: (b: Buffer) => M): Promise<M[]> {
    if (this.closed) throw new RudderError('E_NETLINK', 'netlink: socket closed');
    const seq = this.nextSeq();
    const pad = (4 - (body.length % 4)) % 4;
    const msg = Buffer.alloc(NLMSG_HDRLEN + body.length + pad);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE((flags | NLM_F_REQUEST | NLM_F_ACK) & 0xffff, 6);
    msg.writeUInt32LE(seq, 8);
    body.copy(msg, NLMSG_HDRLEN);
    const replies = await this.exchange(seq, msg);
    return replies.map((r) => parse(r.data));
  }

  /**
   * Sends one request encoded by wire.ts (`build` gets the sequence number)
   * and waits for its ack. Errors as `call`; `what` is only evaluated on
   * failure, so a successful request allocates no description.
   */
  async send(op: string, what: () => string, build: (seq: number) => Buffer): Promise<void> {
    if (this.closed) throw new RudderError('E_NETLINK', `netlink: ${op} ${what()}: socket closed`);
    const seq = this.nextSeq();
    try {
      await this.exchange(seq, build(seq));
    } catch (e) {
      throw wrapError(op, what(), e);
    }
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
  async call<T>(op: string, what: string, fn: (s: RtRequests) => Promise<T>): Promise<T> {
    if (this.closed) throw new RudderError('E_NETLINK', `netlink: ${op} ${what}: socket closed`);
    try {
      return await fn(this.requests);
    } catch (e) {
      throw wrapError(op, what, e);
    }
  }

  /** Like `call`, but the listed errnos mean "nothing to do" and yield `fallback`. */
  async callTolerant<T>(op: string, what: string, ok: readonly string[], fallback: T, fn: (s: RtRequests) => Promise<T>): Promise<T> {
    try {
      return await this.call(op, what, fn);
    } catch (e) {
      const code = errnoOf(e);
      if (code !== undefined && ok.includes(code)) return fallback;
      throw e;
    }
  }

  /** Closes the socket; requests still waiting fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll('socket closed');
    this.sock.close();
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

/** A field that may be a number or, in older shapes, an enum name: as its number. */
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
