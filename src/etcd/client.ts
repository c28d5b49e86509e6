/**
 * A small etcd v3 client over etcd's JSON gRPC-gateway (`POST /v3/...` on
 * the client port), on node:http / node:https. This module owns the
 * gateway's JSON in both directions: keys and values travel base64, int64s
 * as decimal strings, zero values are left out by etcd, enums by name.
 *
 * What it does: KV (range, put, delete-range, txn, compaction), leases
 * (grant, revoke, one keep-alive, time-to-live), watches (a streamed POST
 * answered with one JSON object per line), user/password auth (a token from
 * /v3/auth/authenticate, fetched again when etcd calls it invalid), TLS, and
 * several endpoints: a request that could not reach one endpoint (refused,
 * unreachable, TLS failure, a pooled connection found dead) goes to the
 * next; a request that may have reached etcd is retried elsewhere only when
 * it is a read. Every request has a deadline, and so does the creation of a
 * watch, so an etcd that stops answering (a black hole) is an error, not a
 * request pending forever.
 *
 * Errors are RudderError E_ETCD naming the endpoint and the operation, with
 * the transport error or etcd's own answer as cause.
 */
import * as http from 'node:http';
import type * as https from 'node:https';
import { RudderError, describeError } from '../errors';

export interface EtcdClientOptions {
  endpoints: readonly string[];
  /** PEM contents; any of them turns on TLS options for https:// endpoints. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  auth?: { username: string; password: string };
  /** Deadline of one request, and of a watch's creation (ms). Default 5000. */
  timeoutMs?: number;
}

export interface KeyValue {
  key: Buffer;
  value: Buffer;
  createRevision: string;
  modRevision: string;
  version: string;
  /** etcd lease ID, decimal; "0" for none. */
  lease: string;
}

export interface RangeResult {
  revision: string;
  kvs: KeyValue[];
  count: number;
}

export type Bytes = Buffer | string;

export interface Compare {
  key: Bytes;
  target: 'CREATE' | 'MOD' | 'VERSION' | 'VALUE';
  result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';
  /** The compared number (revision or version) or, for VALUE, the value. */
  against: string | Buffer;
  /** Compare every key in [key, rangeEnd) (an empty range passes). */
  rangeEnd?: Bytes;
}

export type TxnOp =
  | { put: { key: Bytes; value: Bytes; lease?: string } }
  | { deleteRange: { key: Bytes; rangeEnd?: Bytes } };

export interface TxnResult {
  succeeded: boolean;
  revision: string;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
}

export interface WatchResponse {
  revision: string;
  events: WatchEvent[];
  /** Non-"0" when etcd cancelled the watch because the revision asked for was compacted. */
  compactRevision: string;
  canceled: boolean;
  cancelReason: string;
}

export interface WatchHandlers {
  /** One response of the stream (events of one or more revisions, in order). */
  onResponse(r: WatchResponse): void;
  /** The stream ended (error, disconnect, cancel by etcd); called at most once, never after stop. */
  onBroken(reason: Error): void;
}

/** etcd's own answer: an HTTP status other than 200 with a gRPC code and message. */
export class EtcdServerError extends Error {
  constructor(
    message: string,
    readonly grpcCode: number,
    readonly httpStatus: number,
  ) {
    super(message);
    this.name = 'EtcdServerError';
  }
}

/** The smallest key greater than every key starting with `p` (etcd's prefix range end). */
export function prefixEnd(p: Bytes): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const b64 = (x: Bytes): string => Buffer.from(x).toString('base64');
const unb64 = (x: unknown): Buffer => (typeof x === 'string' ? Buffer.from(x, 'base64') : Buffer.alloc(0));
const int = (x: unknown): string => (typeof x === 'string' || typeof x === 'number' ? String(x) : '0');
type Json = Record<string, unknown>;
const obj = (x: unknown): Json => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Json) : {});
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

function toKv(x: unknown): KeyValue {
  const o = obj(x);
  return {
    key: unb64(o.key),
    value: unb64(o.value),
    createRevision: int(o.create_revision),
    modRevision: int(o.mod_revision),
    version: int(o.version),
    lease: int(o.lease),
  };
}

const revisionOf = (o: Json): string => int(obj(o.header).revision);

function toWatchResponse(x: unknown): WatchResponse {
  const o = obj(x);
  return {
    revision: revisionOf(o),
    events: arr(o.events).map((e) => ({ type: obj(e).type === 'DELETE' ? 'delete' : 'put', kv: toKv(obj(e).kv) })),
    compactRevision: int(o.compact_revision),
    canceled: o.canceled === true,
    cancelReason: typeof o.cancel_reason === 'string' ? o.cancel_reason : '',
  };
}

function compareJson(c: Compare): Json {
  const j: Json = { key: b64(c.key), target: c.target, result: c.result };
  if (c.rangeEnd !== undefined) j.range_end = b64(c.rangeEnd);
  if (c.target === 'VALUE') j.value = b64(c.against);
  else j[c.target === 'CREATE' ? 'create_revision' : c.target === 'MOD' ? 'mod_revision' : 'version'] = String(c.against);
  return j;
}

function opJson(op: TxnOp): Json {
  if ('put' in op) {
    const p: Json = { key: b64(op.put.key), value: b64(op.put.value) };
    if (op.put.lease !== undefined && op.put.lease !== '0') p.lease = op.put.lease;
    return { request_put: p };
  }
  const d: Json = { key: b64(op.deleteRange.key) };
  if (op.deleteRange.rangeEnd !== undefined) d.range_end = b64(op.deleteRange.rangeEnd);
  return { request_delete_range: d };
}

/** Transport errors that prove the request never reached etcd's HTTP handler. */
const NOT_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);
const GRPC_UNAUTHENTICATED = 16;

class AttemptError extends Error {
  constructor(
    message: string,
    /** True when the request certainly did not reach etcd (safe to send elsewhere). */
    readonly notSent: boolean,
    options: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface Answer {
  status: number;
  body: Json;
}

export class EtcdClient {
  private readonly endpoints: readonly URL[];
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  /** Watches hold their connection for as long as they run: their own agent, no pooling. */
  private readonly watchAgent: http.Agent;
  private readonly auth: { username: string; password: string } | undefined;
  private token: Promise<string> | null = null;
  /** Index of the endpoint that answered last: requests start there. */
  private current = 0;
  private closed = false;
  private readonly watches = new Set<() => void>();

  constructor(opts: EtcdClientOptions) {
    if (opts.endpoints.length === 0) throw new RudderError('E_FLAG', 'etcd: no endpoint given');
    this.endpoints = opts.endpoints.map((e) => {
      try {
        const u = new URL(e);
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`scheme ${u.protocol} (expected http: or https:)`);
        return u;
      } catch (err) {
        throw new RudderError('E_FLAG', `etcd endpoint ${JSON.stringify(e)}: expected a URL like http://127.0.0.1:2379`, { cause: err });
      }
    });
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.auth = opts.auth;
    const tlsUsed = this.endpoints.some((u) => u.protocol === 'https:');
    if (tlsUsed) {
      // node:https only when an endpoint needs it: it costs ~2 MB of RSS to load.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const h = require('node:https') as typeof https;
      const t = opts.tls ?? {};
      const o: https.AgentOptions = { keepAlive: true, maxSockets: 32, ...(t.ca ? { ca: t.ca } : {}), ...(t.cert ? { cert: t.cert } : {}), ...(t.key ? { key: t.key } : {}) };
      this.agent = new h.Agent(o);
      this.watchAgent = new h.Agent({ ...o, keepAlive: false, maxSockets: Infinity });
    } else {
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
      this.watchAgent = new http.Agent({ keepAlive: false });
    }
  }

  /** The endpoints, comma-separated (for messages). */
  get where(): string {
    return this.endpoints.map((u) => u.origin).join(',');
  }

  // ---- KV

  async range(key: Bytes, opts: { rangeEnd?: Bytes; prefix?: boolean; countOnly?: boolean; limit?: number } = {}): Promise<RangeResult> {
    const body: Json = { key: b64(key) };
    const end = opts.prefix ? prefixEnd(key) : opts.rangeEnd;
    if (end !== undefined) body.range_end = b64(end);
    if (opts.countOnly) body.count_only = true;
    if (opts.limit) body.limit = String(opts.limit);
    const r = await this.request('range', '/v3/kv/range', body, true);
    return { revision: revisionOf(r), kvs: arr(r.kvs).map(toKv), count: Number(int(r.count)) };
  }

  /** The value of one key as UTF-8 text, null when absent. */
  async get(key: Bytes): Promise<string | null> {
    const r = await this.range(key);
    return r.kvs[0] ? r.kvs[0].value.toString('utf8') : null;
  }

  async put(key: Bytes, value: Bytes, opts: { lease?: string } = {}): Promise<{ revision: string }> {
    const body: Json = { key: b64(key), value: b64(value) };
    if (opts.lease !== undefined && opts.lease !== '0') body.lease = opts.lease;
    const r = await this.request('put', '/v3/kv/put', body, false);
    return { revision: revisionOf(r) };
  }

  async deleteRange(key: Bytes, opts: { rangeEnd?: Bytes; prefix?: boolean } = {}): Promise<{ revision: string; deleted: number }> {
    const body: Json = { key: b64(key) };
    const end = opts.prefix ? prefixEnd(key) : opts.rangeEnd;
    if (end !== undefined) body.range_end = b64(end);
    const r = await this.request('delete', '/v3/kv/deleterange', body, false);
    return { revision: revisionOf(r), deleted: Number(int(r.deleted)) };
  }

  async txn(t: { compare: readonly Compare[]; success: readonly TxnOp[]; failure?: readonly TxnOp[] }): Promise<TxnResult> {
    const body: Json = { compare: t.compare.map(compareJson), success: t.success.map(opJson), failure: (t.failure ?? []).map(opJson) };
    const r = await this.request('txn', '/v3/kv/txn', body, false);
    return { succeeded: r.succeeded === true, revision: revisionOf(r) };
  }

  async compact(revision: string, physical = true): Promise<void> {
    await this.request('compact', '/v3/kv/compaction', { revision, physical }, false);
  }

  // ---- leases

  /** Grants a lease of `ttlS` seconds; returns its ID (decimal). */
  async leaseGrant(ttlS: number): Promise<string> {
    const r = await this.request('lease grant', '/v3/lease/grant', { TTL: String(ttlS), ID: '0' }, false);
    return int(r.ID);
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.request('lease revoke', '/v3/lease/revoke', { ID: id }, false);
  }

  /** One keep-alive: returns the lease's renewed TTL in seconds, 0 when the lease is gone. */
  async leaseKeepAlive(id: string): Promise<number> {
    // A streamed RPC; with the request body ended after one message etcd answers once and ends the stream.
    const r = await this.request('lease keep-alive', '/v3/lease/keepalive', { ID: id }, true);
    const res = obj(r.result);
    if (r.error !== undefined) throw new EtcdServerError(describeStreamError(r.error), GRPC_CODE(r.error), 200);
    return Number(int(res.TTL));
  }

  /** Remaining TTL in seconds; -1 (or 0) when the lease is gone. */
  async leaseTimeToLive(id: string): Promise<number> {
    const r = await this.request('lease time-to-live', '/v3/lease/timetolive', { ID: id, keys: false }, true);
    return Number(int(r.TTL));
  }

  // ---- watches

  /**
   * Starts a watch on `key` (or the range/prefix) from `startRevision` (default:
   * now). Resolves once etcd confirmed it (within the request deadline) with a
   * stop function; then `onResponse` gets every response until `onBroken`.
   */
  async watch(
    key: Bytes,
    opts: { rangeEnd?: Bytes; prefix?: boolean; startRevision?: string },
    h: WatchHandlers,
  ): Promise<() => void> {
    const create: Json = { key: b64(key) };
    const end = opts.prefix ? prefixEnd(key) : opts.rangeEnd;
    if (end !== undefined) create.range_end = b64(end);
    if (opts.startRevision !== undefined && opts.startRevision !== '0') create.start_revision = opts.startRevision;
    const text = JSON.stringify({ create_request: create });
    return this.withEndpoints('watch', true, (ep, token) => this.watchOnce(ep, token, text, h));
  }

  private watchOnce(ep: URL, token: string | null, text: string, h: WatchHandlers): Promise<() => void> {
    return new Promise((resolve, reject) => {
      let created = false;
      let done = false;
      let connected = false;
      let buf = '';
      const finish = (e: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.watches.delete(stop);
        req.destroy();
        if (created) h.onBroken(e);
        else reject(new AttemptError(`${ep.origin} watch: ${describeError(e)}`, !connected, { cause: e }));
      };
      const stop = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.watches.delete(stop);
        req.destroy();
      };
      const req = this.send(ep, '/v3/watch', text, token, this.watchAgent, () => (connected = true));
      // A watch is quiet for hours: TCP keep-alive lets the kernel notice a peer that vanished.
      req.on('socket', (s) => s.setKeepAlive(true, 30_000));
      const timer = setTimeout(() => finish(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.watches.add(stop);
      req.on('error', (e) => finish(e));
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          readAll(res).then(
            (t) => finish(serverError(res.statusCode ?? 0, t)),
            (e: unknown) => finish(e instanceof Error ? e : new Error(String(e))),
          );
          return;
        }
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (done) return;
          buf += chunk;
          for (let nl = buf.indexOf('\n'); nl >= 0 && !done; nl = buf.indexOf('\n')) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line) onLine(line);
          }
        });
        res.on('end', () => finish(new Error('watch stream ended')));
        res.on('error', (e) => finish(e));
        res.on('close', () => finish(new Error('watch connection closed')));
      });
      const onLine = (line: string): void => {
        let msg: Json;
        try {
          msg = obj(JSON.parse(line));
        } catch (e) {
          finish(new Error(`watch stream: not JSON: ${line.slice(0, 80)}`, { cause: e }));
          return;
        }
        if (msg.error !== undefined) {
          finish(new EtcdServerError(describeStreamError(msg.error), GRPC_CODE(msg.error), 200));
          return;
        }
        const raw = obj(msg.result);
        if (!created) {
          if (raw.created !== true) {
            finish(new Error(`watch stream: expected the creation first, got ${line.slice(0, 120)}`));
            return;
          }
          created = true;
          clearTimeout(timer);
          resolve(stop);
          // etcd may put events or a cancellation in the creation response itself: fall through.
        }
        const r = toWatchResponse(raw);
        if (r.canceled) {
          const why = r.compactRevision !== '0' ? `watch compacted at revision ${r.compactRevision}` : `watch canceled by etcd${r.cancelReason ? `: ${r.cancelReason}` : ''}`;
          finish(new EtcdServerError(why, 0, 200));
          return;
        }
        if (r.events.length) h.onResponse(r);
      };
    });
  }

  // ---- transport

  /** Stops every watch and closes the connections; requests after this fail. */
  close(): void {
    this.closed = true;
    for (const s of [...this.watches]) s();
    this.agent.destroy();
    this.watchAgent.destroy();
  }

  private async request(op: string, path: string, body: Json, idempotent: boolean): Promise<Json> {
    const text = JSON.stringify(body);
    return this.withEndpoints(op, idempotent, async (ep, token) => {
      const a = await this.post(ep, path, text, token);
      if (a.status !== 200) throw serverError(a.status, a.body);
      return a.body;
    });
  }

  /**
   * Runs one attempt per endpoint (starting with the last good one) until one
   * answers; moves on only when the attempt failed before etcd saw it, or for
   * reads. Fetches an auth token first when needed, and once more when etcd
   * says the token is invalid (tokens expire, and a member restart drops them).
   */
  private async withEndpoints<T>(op: string, idempotent: boolean, attempt: (ep: URL, token: string | null) => Promise<T>): Promise<T> {
    if (this.closed) throw new RudderError('E_ETCD', `etcd ${this.where}: ${op}: client closed`);
    const n = this.endpoints.length;
    const failures: string[] = [];
    let lastErr: unknown;
    let reauthed = false;
    const first = this.current;
    for (let i = 0; i < n; i++) {
      const idx = (first + i) % n;
      const ep = this.endpoints[idx] as URL;
      let used: Promise<string> | null = null;
      try {
        used = this.auth ? this.tokenFor(ep) : null;
        const token = used ? await used : null;
        const r = await attempt(ep, token);
        this.current = idx;
        return r;
      } catch (e) {
        lastErr = e;
        if (e instanceof EtcdServerError && e.grpcCode === GRPC_UNAUTHENTICATED && this.auth && !reauthed && /invalid auth token|token/i.test(e.message)) {
          reauthed = true;
          // Only the first of many requests that met the same stale token drops it.
          if (this.token === used) this.token = null;
          i--; // the same endpoint again, with a new token
          continue;
        }
        failures.push(`${ep.origin}: ${e instanceof AttemptError ? describeError(e.cause) : describeError(e)}${gatewayHint(ep, e)}`);
        // etcd's own "unavailable" (no leader, member stopping) is worth another member for a read.
        const movable = e instanceof AttemptError ? e.notSent || idempotent : idempotent && e instanceof EtcdServerError && e.grpcCode === 14;
        if (!movable) break;
        if (n > 1) this.current = (idx + 1) % n;
      }
    }
    const msg = failures.length === 1 ? (failures[0] as string) : `every endpoint failed: ${failures.join('; ')}`;
    throw new RudderError('E_ETCD', `${op}: ${msg}`, { cause: lastErr instanceof AttemptError ? lastErr.cause : lastErr });
  }

  private tokenFor(ep: URL): Promise<string> {
    const auth = this.auth as { username: string; password: string };
    this.token ??= (async () => {
      const a = await this.post(ep, '/v3/auth/authenticate', JSON.stringify({ name: auth.username, password: auth.password }), null);
      if (a.status !== 200) throw serverError(a.status, a.body);
      const t = a.body.token;
      if (typeof t !== 'string' || !t) throw new Error('authenticate: etcd returned no token');
      return t;
    })();
    const p = this.token;
    p.catch(() => {
      if (this.token === p) this.token = null;
    });
    return p;
  }

  private send(ep: URL, path: string, text: string, token: string | null, agent: http.Agent, onConnected: () => void): http.ClientRequest {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
    if (token) headers.authorization = token;
    const o: http.RequestOptions = { method: 'POST', host: ep.hostname.replace(/^\[|\]$/g, ''), port: ep.port || (ep.protocol === 'https:' ? 443 : 80), path, headers, agent };
    // The agent decides http or https; both modules' request() accept either agent kind.
    const req = http.request(ep.protocol === 'https:' ? { ...o, protocol: 'https:' } : o);
    req.on('socket', (s) => {
      const secure = ep.protocol === 'https:';
      const ready = (): void => onConnected();
      if (req.reusedSocket) return; // a pooled socket: see reusedSocket below
      if (secure) s.once('secureConnect', ready);
      else if ((s as { connecting?: boolean }).connecting) s.once('connect', ready);
      else ready();
    });
    req.end(text);
    return req;
  }

  /** One POST to one endpoint: status and parsed JSON body, or an AttemptError. */
  private post(ep: URL, path: string, text: string, token: string | null): Promise<Answer> {
    return new Promise((resolve, reject) => {
      let connected = false;
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        // A pooled connection that etcd had closed: the request never got there.
        const deadPooled = req.reusedSocket && ['ECONNRESET', 'EPIPE'].includes((e as { code?: string }).code ?? '') && !gotResponse;
        const code = (e as { code?: string }).code ?? '';
        reject(new AttemptError(`${ep.origin} ${path}: ${describeError(e)}`, !connected || deadPooled || NOT_SENT.has(code), { cause: e }));
      };
      let gotResponse = false;
      const req = this.send(ep, path, text, token, this.agent, () => (connected = true));
      const timer = setTimeout(() => fail(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      req.on('error', fail);
      req.on('response', (res) => {
        gotResponse = true;
        readAll(res).then((t) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          let body: Json;
          try {
            body = obj(JSON.parse(t));
          } catch {
            body = { message: t.slice(0, 200) };
          }
          resolve({ status: res.statusCode ?? 0, body });
        }, fail);
      });
    });
  }
}

/**
 * etcd's gateway answers 503 when it cannot reach etcd's own gRPC server: over
 * TLS with --client-cert-auth that is almost always the server certificate
 * (which the gateway presents as its client certificate) lacking clientAuth.
 */
function gatewayHint(ep: URL, e: unknown): string {
  if (ep.protocol !== 'https:' || !(e instanceof EtcdServerError) || e.httpStatus !== 503) return '';
  return " (etcd's JSON gateway could not reach its own gRPC server: with --client-cert-auth, etcd's server certificate must also allow client authentication (extendedKeyUsage clientAuth), or on etcd 3.5+ set --client-cert-file)";
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
  });
}

const GRPC_CODE = (e: unknown): number => Number(obj(e).grpc_code ?? obj(e).code ?? 0);

function describeStreamError(e: unknown): string {
  const o = obj(e);
  return typeof o.message === 'string' ? o.message : JSON.stringify(e);
}

/** etcd's error answer ({"error","message","code"}), as an EtcdServerError. */
function serverError(status: number, body: Json | string): EtcdServerError {
  const o = typeof body === 'string' ? (() => {
    try {
      return obj(JSON.parse(body));
    } catch {
      return { message: body.slice(0, 200) };
    }
  })() : body;
  const msg = typeof o.message === 'string' && o.message ? o.message : typeof o.error === 'string' ? o.error : `HTTP ${status}`;
  return new EtcdServerError(msg, Number(o.code ?? 0), status);
}
