/**
 * LeaseWatcher: the one source of lease events. List, hand the diff to the
 * consumer, watch from the listed revision + 1; when the watch breaks
 * (disconnect, compaction, etcd restart) list again and diff against what
 * the consumer was last told. So the consumer sees exactly the changes:
 * never a spurious removal of a live lease, never a missed one.
 *
 * Events are delivered serially: the next batch is not handed over until
 * the consumer's promise for the previous one settles.
 */
import { describeError } from '../errors';
import type { Logger } from '../log';
import { noStats, type EtcdStats } from '../metrics/telemetry';
import { backoffMs } from '../util/backoff';
import { LeaseMap, applyEvents, diffLeases } from './diff';
import { type Lease, type LeaseEvent, formatLeaseKey, leaseName } from './lease';
import type { LeaseList, PeerSource, WatchBatch } from './registry';
import { sleep } from '../util/sleep';

export type LeaseConsumer = (events: readonly LeaseEvent[]) => Promise<void>;

export class LeaseWatcher {
  /** What the consumer has been told (or is being told). */
  readonly known: LeaseMap = new Map();
  private chain: Promise<void> = Promise.resolve();
  private warnedInvalid = new Set<string>();
  /** Number of (re)lists done; visible for tests and metrics. */
  lists = 0;

  constructor(
    private readonly registry: PeerSource,
    private readonly log: Logger,
    private readonly consumer: LeaseConsumer,
    /** Counts etcd failures and re-established watches (metrics). */
    private readonly stats: EtcdStats = noStats,
  ) {}

  /**
   * Hands events to the consumer, one batch at a time. Events that arrive
   * while a batch is still waiting for its turn join that batch (in order), so
   * a busy consumer gets fewer, larger batches instead of a growing queue.
   */
  private deliver(events: LeaseEvent[]): void {
    if (events.length === 0) return;
    applyEvents(this.known, events);
    if (this.waiting !== null) {
      for (const e of events) this.waiting.push(e);
      return;
    }
    const batch = events.slice();
    this.waiting = batch;
    this.chain = this.chain.then(() => {
      this.waiting = null; // from here on, new events form the next batch
      return this.consumer(batch).catch((e) => this.log.error('applying lease events failed', { error: describeError(e) }));
    });
  }
  /** The batch queued behind the one being applied, still open for more events. */
  private waiting: LeaseEvent[] | null = null;

  /** Waits until every delivered batch has been applied. */
  settled(): Promise<void> {
    return this.chain;
  }

  private invalid(key: string, reason: string): void {
    if (this.warnedInvalid.has(key + reason)) return;
    this.warnedInvalid.add(key + reason);
    this.log.warn('ignoring an invalid lease entry', { key, reason });
  }

  private onBatch(batch: readonly WatchBatch[]): void {
    const events: LeaseEvent[] = [];
    // Changes of this batch on top of `known` (null: deleted), so several
    // changes of one key in one batch diff correctly without copying `known`.
    const view = new Map<string, Lease | null>();
    const current = (k: string): Lease | undefined => (view.has(k) ? view.get(k) ?? undefined : this.known.get(k));
    for (const b of batch) {
      if (b.kind === 'invalid') {
        this.invalid(b.key, b.reason);
        continue;
      }
      if (b.kind === 'delete') {
        const k = formatLeaseKey(b);
        const old = current(k);
        if (old) {
          events.push({ type: 'removed', lease: old });
          view.set(k, null);
        }
        continue;
      }
      const l: Lease = b.record.lease;
      const k = formatLeaseKey(l);
      const old = current(k);
      const d = diffLeases(new Map(old ? [[k, old]] : []), [l]);
      events.push(...d);
      view.set(k, l);
    }
    this.deliver(events);
  }

  /**
   * Runs until `signal` aborts. Never rejects. `initial`: a list the caller
   * has just read (the daemon's, for the backend's start), used instead of
   * the first list: its leases are handed over as usual and the watch starts
   * at its revision + 1, so nothing between that list and the watch is missed.
   */
  async run(signal: AbortSignal, initial?: LeaseList): Promise<void> {
    let failures = 0;
    let quickBreaks = 0;
    let given = initial;
    while (!signal.aborted) {
      let stop: (() => void) | null = null;
      try {
        const list = given ?? (await this.registry.listLeases());
        given = undefined;
        this.lists++;
        for (const i of list.invalid) this.invalid(i.key, i.reason);
        this.deliver(diffLeases(this.known, list.records.map((r) => r.lease)));
        const fromRev = (BigInt(list.revision) + 1n).toString();
        const broken = new Promise<unknown>((resolve) => {
          const onAbort = (): void => resolve(null);
          signal.addEventListener('abort', onAbort, { once: true });
          this.registry
            .watchLeases(fromRev, {
              onEvents: (b) => this.onBatch(b),
              onBroken: (r) => {
                signal.removeEventListener('abort', onAbort);
                resolve(r);
              },
            })
            .then((s) => {
              stop = s;
              if (signal.aborted) s();
            }, (e: unknown) => {
              signal.removeEventListener('abort', onAbort);
              resolve(e);
            });
        });
        if (failures > 0) {
          this.log.info('lease watch re-established', { leases: list.records.length });
          this.stats.etcdReconnected('watch');
        }
        failures = 0;
        const startedAt = Date.now();
        const reason = await broken;
        if (signal.aborted) break;
        this.log.warn('lease watch interrupted; listing again', { reason: describeError(reason) });
        // A watch that breaks as soon as it starts must not turn into a hot list loop.
        if (Date.now() - startedAt < 1000) await sleep(backoffMs(++quickBreaks), signal);
        else quickBreaks = 0;
      } catch (e) {
        failures++;
        this.stats.etcdError('watch');
        this.log.warn(`${this.registry.storeName ?? 'etcd'} unreachable; keeping current routes, retrying`, { error: describeError(e), attempt: failures });
        await sleep(backoffMs(failures), signal);
      } finally {
        (stop as (() => void) | null)?.();
      }
    }
  }
}

export function describeLease(l: Lease): string {
  return leaseName(l);
}
