/**
 * Registry over the etcd v3 API (src/etcd/client.ts: etcd's JSON gateway).
 *
 * Acquisition is one transaction "create only if the key does not exist"
 * (compare create_revision == 0), and updates are compare-and-swap on
 * mod_revision; both map 1:1 onto Txn.
 *
 * A watch runs until it breaks once (disconnect, error, cancel by a
 * compaction); then we report `onBroken` and the caller lists again and
 * diffs. No watch is ever resumed, so no event can be lost between a
 * reconnect and a compaction.
 */
import { readFileSync } from 'node:fs';
import { EtcdClient, prefixEnd, type Compare, type EtcdClientOptions, type KeyValue, type WatchResponse } from '../etcd/client';
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

export class EtcdRegistry implements Registry {
  private readonly client: EtcdClient;
  private readonly prefix: string;
  private readonly where: string;
  private readonly tls: boolean;

  constructor(opts: EtcdOptions) {
    this.prefix = opts.prefix;
    this.where = `etcd ${opts.endpoints.join(',')}`;
    const timeout = opts.requestTimeoutMs ?? 5000;
    this.tls = opts.endpoints.some((e) => e.startsWith('https:'));
    const o: EtcdClientOptions = { endpoints: opts.endpoints, timeoutMs: timeout };
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
      o.tls = {
        ...(opts.cafile ? { ca: read('cafile', opts.cafile) } : {}),
        ...(opts.keyfile ? { key: read('keyfile', opts.keyfile) } : {}),
        ...(opts.certfile ? { cert: read('certfile', opts.certfile) } : {}),
      };
    }
    if (opts.username !== undefined) o.auth = { username: opts.username, password: opts.password ?? '' };
    this.client = new EtcdClient(o);
  }

  private fail(op: string, e: unknown): RudderError {
    // The client's own errors already name the endpoint(s) and their causes.
    const m = e instanceof RudderError && e.code === 'E_ETCD' ? e.message : describeError(e);
    // A failed TLS handshake comes as OpenSSL's words ("unable to verify the first certificate", "alert certificate required").
    const hint = this.tls && /SSL|certificate|handshake/i.test(m) ? ' (TLS handshake failed: check -etcd-cafile, -etcd-certfile and -etcd-keyfile against the server)' : '';
    // Keep the client's cause (not the client's error, whose message is already in ours).
    const cause = e instanceof RudderError && e.code === 'E_ETCD' && e.cause !== undefined ? e.cause : e;
    return new RudderError('E_ETCD', `${this.where}: ${op}${hint}: ${m}`, { cause });
  }

  private async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.fail(op, e);
    }
  }

  async getConfig(): Promise<string | null> {
    return this.call('read config', () => this.client.get(configKey(this.prefix)));
  }

  async putConfig(text: string, ifAbsent: boolean): Promise<boolean> {
    const key = configKey(this.prefix);
    return this.call('write config', async () => {
      if (!ifAbsent) {
        await this.client.put(key, text);
        return true;
      }
      const r = await this.client.txn({ compare: [{ key, target: 'CREATE', result: 'EQUAL', against: '0' }], success: [{ put: { key, value: text } }] });
      return r.succeeded;
    });
  }

  async watchConfig(onChange: (text: string | null) => void, onBroken: (reason: unknown) => void): Promise<() => void> {
    return this.supervise('watch config', configKey(this.prefix), {}, onBroken, (res) => {
      const last = res.events[res.events.length - 1];
      if (last) onChange(last.type === 'put' ? last.kv.value.toString() : null);
    });
  }

  private toRecord(kv: KeyValue, sp: string): LeaseRecord | { key: string; reason: string } {
    const key = kv.key.toString();
    const parsed = parseLeaseEntry(key.slice(sp.length), kv.value.toString(), null);
    if ('error' in parsed) return { key, reason: parsed.error };
    return { lease: parsed.lease, modRevision: kv.modRevision, etcdLeaseId: kv.lease };
  }

  async listLeases(): Promise<LeaseList> {
    const sp = subnetsPrefix(this.prefix);
    const res = await this.call('list leases', () => this.client.range(sp, { prefix: true }));
    const records: LeaseRecord[] = [];
    const invalid: { key: string; reason: string }[] = [];
    for (const kv of res.kvs) {
      const r = this.toRecord(kv, sp);
      if ('lease' in r) records.push(r);
      else invalid.push(r);
    }
    return { records, revision: res.revision, invalid };
  }

  private async grant(ttlMs: number): Promise<string> {
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000));
    return this.client.leaseGrant(ttl);
  }

  private async revokeQuietly(id: string): Promise<void> {
    if (id === '0') return;
    try {
      await this.client.leaseRevoke(id);
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
    const r = await this.client.txn({
      compare: [{ key, target: compare.target === 'Create' ? 'CREATE' : 'MOD', result: 'EQUAL', against: compare.rev }, ...this.noNewKeys(noKeyCreatedAfter)],
      success: [{ put: { key, value: text, lease: leaseId } }],
    });
    if (!r.succeeded) return null;
    const parsed = parseLeaseEntry(formatLeaseKey(subnets), text.toString(), null);
    if ('error' in parsed) throw new RudderError('E_INTERNAL', `lease value did not round-trip: ${parsed.error}`);
    return { lease: parsed.lease, modRevision: r.revision, etcdLeaseId: leaseId };
  }

  /**
   * IPv6 (dual-stack) guard: every key under subnets/ was created at or
   * before `rev` (a range compare; an empty range passes), so what that
   * listing showed free is still free.
   */
  private noNewKeys(rev: string | undefined): Compare[] {
    if (rev === undefined) return [];
    const key = Buffer.from(subnetsPrefix(this.prefix));
    return [{ key, rangeEnd: prefixEnd(key), target: 'CREATE', result: 'LESS', against: String(BigInt(rev) + 1n) }];
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
      const ttl = await this.client.leaseKeepAlive(rec.etcdLeaseId);
      return ttl > 0 ? Date.now() + ttl * 1000 : null;
    });
  }

  async timeToLive(etcdLeaseId: string): Promise<number | null> {
    if (etcdLeaseId === '0') return null;
    return this.call('lease time-to-live', async () => {
      const ttl = await this.client.leaseTimeToLive(etcdLeaseId);
      return ttl > 0 ? ttl * 1000 : null;
    });
  }

  async watchLeases(fromRevision: string, h: WatchHandlers): Promise<() => void> {
    const sp = subnetsPrefix(this.prefix);
    return this.supervise('watch leases', sp, { prefix: true, startRevision: fromRevision }, (reason) => h.onBroken(reason), (res) => {
      const batch: WatchBatch[] = [];
      for (const ev of res.events) {
        const key = ev.kv.key.toString();
        if (ev.type === 'delete') {
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
   * Runs a watch until it breaks once (the client ends it then, and etcd's
   * cancel for a compaction is a break too): the caller decides how to
   * resume (list + diff), so a resumed stream can never skip events.
   */
  private async supervise(
    op: string,
    key: string,
    opts: { prefix?: boolean; startRevision?: string },
    onBroken: (reason: unknown) => void,
    onData: (res: WatchResponse) => void,
  ): Promise<() => void> {
    let stop: (() => void) | null = null;
    let done = false;
    const broken = (reason: unknown): void => {
      if (done) return;
      done = true;
      stop?.();
      onBroken(reason);
    };
    stop = await this.call(op, () =>
      this.client.watch(key, opts, {
        onResponse: (res) => {
          if (done) return;
          try {
            onData(res);
          } catch (e) {
            broken(e);
          }
        },
        onBroken: (e) => broken(/compacted/.test(e.message) ? new RudderError('E_ETCD', e.message, { cause: e }) : this.fail(op, e)),
      }),
    );
    const s = stop;
    return () => {
      done = true;
      s();
    };
  }

  close(): void {
    this.client.close();
  }
}
