/**
 * Registry over the etcd v3 API (the `etcd3` package, raw KV/Lease RPCs).
 *
 * Why raw RPCs: acquisition must be one transaction "create only if the key
 * does not exist" (compare create_revision == 0), and updates must be
 * compare-and-swap on mod_revision; both map 1:1 onto Txn.
 *
 * Watches use the package's watcher only for the stream itself: on any
 * disconnect or cancel (compaction) we cancel it and report `onBroken`, and
 * the caller lists again and diffs. The package's own resume logic is not
 * relied on, so no event can be lost between a reconnect and a compaction.
 */
import { readFileSync } from 'node:fs';
import { Etcd3, IOptions, Watcher } from 'etcd3';
import type { IKeyValue, IWatchResponse } from 'etcd3/lib/rpc';
import { RudderError, describeError } from '../errors';
import type { Cidr } from '../ip/ipv4';
import { type LeaseSubnets, formatLeaseKey, parseLeaseKey } from './lease';
import {
  CreateOptions,
  LeaseList,
  LeaseRecord,
  LeaseValue,
  Registry,
  WatchBatch,
  WatchHandlers,
  configKey,
  leaseKeyOf,
  parseLeaseEntry,
  subnetsPrefix,
} from './registry';

export interface EtcdOptions {
  endpoints: readonly string[];
  prefix: string;
  cafile?: string | undefined;
  certfile?: string | undefined;
  keyfile?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** Deadline of one unary request (ms). */
  requestTimeoutMs?: number;
}

function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export class EtcdRegistry implements Registry {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly where: string;
  private readonly timeoutMs: number;
  private readonly tls: boolean;

  constructor(opts: EtcdOptions) {
    this.prefix = opts.prefix;
    this.where = `etcd ${opts.endpoints.join(',')}`;
    const timeout = opts.requestTimeoutMs ?? 5000;
    this.timeoutMs = timeout;
    this.tls = opts.endpoints.some((e) => e.startsWith('https:'));
    const o: IOptions = {
      hosts: [...opts.endpoints],
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    };
    const read = (what: string, file: string): Buffer => {
      try {
        return readFileSync(file);
      } catch (e) {
        // describeError appends the cause (ENOENT, EACCES, ...).
        throw new RudderError('E_FLAG', `-etcd-${what}=${file}: cannot read it, expected a readable PEM file`, { cause: e });
      }
    };
    if (opts.cafile || opts.certfile || opts.keyfile) {
      if ((opts.certfile === undefined) !== (opts.keyfile === undefined)) {
        throw new RudderError('E_FLAG', '-etcd-certfile and -etcd-keyfile: expected both or neither');
      }
      o.credentials = {
        rootCertificate: opts.cafile ? read('cafile', opts.cafile) : Buffer.alloc(0),
        ...(opts.keyfile ? { privateKey: read('keyfile', opts.keyfile) } : {}),
        ...(opts.certfile ? { certChain: read('certfile', opts.certfile) } : {}),
      };
    }
    if (opts.username !== undefined) o.auth = { username: opts.username, password: opts.password ?? '' };
    this.client = new Etcd3(o);
  }

  private fail(op: string, e: unknown): RudderError {
    const m = describeError(e);
    // gRPC reports a failed TLS handshake as OpenSSL's words ("ssl3_read_bytes", "unable to verify the first certificate").
    const hint = this.tls && /SSL|certificate|handshake/i.test(m) ? ' (TLS handshake failed: check -etcd-cafile, -etcd-certfile and -etcd-keyfile against the server)' : '';
    return new RudderError('E_ETCD', `${this.where}: ${op}${hint}: ${m}`, { cause: e });
  }

  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.fail(op, e);
    }
  }

  async getConfig(): Promise<string | null> {
    return this.call('read config', () => this.client.get(configKey(this.prefix)).string());
  }

  async putConfig(text: string, ifAbsent: boolean): Promise<boolean> {
    const key = configKey(this.prefix);
    return this.call('write config', async () => {
      if (!ifAbsent) {
        await this.client.put(key).value(text);
        return true;
      }
      const r = await this.client.if(key, 'Create', '==', 0).then(this.client.put(key).value(text)).commit();
      return r.succeeded;
    });
  }

  async watchConfig(onChange: (text: string | null) => void, onBroken: (reason: unknown) => void): Promise<() => void> {
    const w = await this.call('watch config', () => this.client.watch().key(configKey(this.prefix)).create());
    return this.supervise(w, onBroken, (res) => {
      const last = res.events[res.events.length - 1];
      if (last) onChange(last.type === 'Put' ? last.kv.value.toString() : null);
    });
  }

  private toRecord(kv: IKeyValue, sp: string): LeaseRecord | { key: string; reason: string } {
    const key = kv.key.toString();
    const parsed = parseLeaseEntry(key.slice(sp.length), kv.value.toString(), null);
    if ('error' in parsed) return { key, reason: parsed.error };
    return { lease: parsed.lease, modRevision: kv.mod_revision, etcdLeaseId: kv.lease };
  }

  async listLeases(): Promise<LeaseList> {
    const sp = subnetsPrefix(this.prefix);
    const key = Buffer.from(sp);
    const res = await this.call('list leases', () => this.client.kv.range({ key, range_end: prefixEnd(key) }));
    const records: LeaseRecord[] = [];
    const invalid: { key: string; reason: string }[] = [];
    for (const kv of res.kvs) {
      const r = this.toRecord(kv, sp);
      if ('lease' in r) records.push(r);
      else invalid.push(r);
    }
    return { records, revision: res.header.revision, invalid };
  }

  private async grant(ttlMs: number): Promise<string> {
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000));
    const g = await this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 });
    return String(g.ID);
  }

  private async revokeQuietly(id: string): Promise<void> {
    if (id === '0') return;
    try {
      await this.client.leaseClient.leaseRevoke({ ID: id });
    } catch {
      // The lease expires by itself; nothing is attached to it any more.
    }
  }

  private async putIf(
    subnets: LeaseSubnets,
    value: LeaseValue,
    compare: { target: 'Create' | 'Mod'; rev: string },
    leaseId: string,
    noKeyCreatedAfter?: string,
  ): Promise<LeaseRecord | null> {
    const key = Buffer.from(leaseKeyOf(this.prefix, subnets));
    const text = Buffer.from(JSON.stringify(value));
    const r = await this.client.kv.txn({
      compare: [
        compare.target === 'Create'
          ? { key, target: 'Create', result: 'Equal', create_revision: 0 }
          : { key, target: 'Mod', result: 'Equal', mod_revision: compare.rev },
        ...this.noNewKeys(noKeyCreatedAfter),
      ],
      success: [{ request_put: { key, value: text, lease: leaseId } }],
      failure: [],
    });
    if (!r.succeeded) return null;
    const parsed = parseLeaseEntry(formatLeaseKey(subnets), text.toString(), null);
    if ('error' in parsed) throw new RudderError('E_INTERNAL', `lease value did not round-trip: ${parsed.error}`);
    return { lease: parsed.lease, modRevision: r.header.revision, etcdLeaseId: leaseId };
  }

  /**
   * IPv6 (dual-stack) guard: every key under subnets/ was created at or
   * before `rev` (a range compare; an empty range passes), so what that
   * listing showed free is still free.
   */
  private noNewKeys(rev: string | undefined): { key: Buffer; range_end: Buffer; target: 'Create'; result: 'Less'; create_revision: string }[] {
    if (rev === undefined) return [];
    const key = Buffer.from(subnetsPrefix(this.prefix));
    return [{ key, range_end: prefixEnd(key), target: 'Create', result: 'Less', create_revision: String(BigInt(rev) + 1n) }];
  }

  async createLease(subnet: Cidr, value: LeaseValue, ttlMs: number, more: CreateOptions = {}): Promise<LeaseRecord | null> {
    return this.call('create lease', async () => {
      const id = await this.grant(ttlMs);
      const rec = await this.putIf({ subnet, ipv6Subnet: more.ipv6Subnet }, value, { target: 'Create', rev: '0' }, id, more.noKeyCreatedAfter);
      if (!rec) await this.revokeQuietly(id);
      return rec;
    });
  }

  async updateLease(prev: LeaseRecord, value: LeaseValue, ttlMs: number): Promise<LeaseRecord | null> {
    return this.call('update lease', async () => {
      const reservation = prev.etcdLeaseId === '0';
      const id = reservation ? '0' : await this.grant(ttlMs);
      const rec = await this.putIf(prev.lease, value, { target: 'Mod', rev: prev.modRevision }, id);
      if (!rec) await this.revokeQuietly(id);
      else if (!reservation) await this.revokeQuietly(prev.etcdLeaseId);
      return rec;
    });
  }

  async renewLease(rec: LeaseRecord): Promise<number | null> {
    if (rec.etcdLeaseId === '0') return null;
    return this.call('renew lease', async () => {
      const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + this.timeoutMs });
      try {
        const res = await new Promise<{ TTL: string }>((resolve, reject) => {
          stream.on('data', resolve);
          stream.on('error', reject);
          stream.on('end', () => reject(new Error('keep-alive stream ended')));
          stream.write({ ID: rec.etcdLeaseId });
        });
        const ttl = Number(res.TTL);
        return ttl > 0 ? Date.now() + ttl * 1000 : null;
      } finally {
        stream.end();
      }
    });
  }

  async timeToLive(etcdLeaseId: string): Promise<number | null> {
    if (etcdLeaseId === '0') return null;
    return this.call('lease time-to-live', async () => {
      const r = await this.client.leaseClient.leaseTimeToLive({ ID: etcdLeaseId, keys: false });
      const ttl = Number(r.TTL);
      return ttl > 0 ? ttl * 1000 : null;
    });
  }

  async watchLeases(fromRevision: string, h: WatchHandlers): Promise<() => void> {
    const sp = subnetsPrefix(this.prefix);
    const w = await this.call('watch leases', () =>
      this.client.watch().prefix(sp).startRevision(fromRevision).create(),
    );
    return this.supervise(w, (reason) => h.onBroken(reason), (res) => {
      const batch: WatchBatch[] = [];
      for (const ev of res.events) {
        const key = ev.kv.key.toString();
        if (ev.type === 'Delete') {
          const k = parseLeaseKey(key.slice(sp.length));
          if (k) batch.push(k.ipv6Subnet ? { kind: 'delete', subnet: k.subnet, ipv6Subnet: k.ipv6Subnet } : { kind: 'delete', subnet: k.subnet });
          continue;
        }
        const r = this.toRecord(ev.kv, sp);
        batch.push('lease' in r ? { kind: 'put', record: r } : { kind: 'invalid', key: r.key, reason: r.reason });
      }
      if (batch.length) h.onEvents(batch);
    });
  }

  /**
   * Runs a watcher until it breaks once, then cancels it: the caller decides
   * how to resume (list + diff), so a resumed stream can never skip events.
   */
  private supervise(w: Watcher, onBroken: (reason: unknown) => void, onData: (res: IWatchResponse) => void): () => void {
    let done = false;
    const stop = (): void => {
      if (done) return;
      done = true;
      w.removeAllListeners('data');
      w.cancel().catch(() => undefined);
    };
    const broken = (reason: unknown): void => {
      if (done) return;
      stop();
      onBroken(reason);
    };
    w.on('data', (res: IWatchResponse) => {
      if (done) return;
      if (res.compact_revision !== undefined && res.compact_revision !== '0' && res.canceled) {
        broken(new RudderError('E_ETCD', `watch compacted at revision ${res.compact_revision}`));
        return;
      }
      try {
        onData(res);
      } catch (e) {
        broken(e);
      }
    });
    w.on('disconnected', (e: unknown) => broken(this.fail('watch disconnected', e)));
    w.on('error', (e: unknown) => broken(this.fail('watch', e)));
    return stop;
  }

  close(): void {
    this.client.close();
  }
}
