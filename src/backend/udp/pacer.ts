/**
 * Paces the udp backend's route-table swaps (pure apart from the clock and
 * timer it is given).
 *
 * Every swap hands the data plane the complete table (the one-step swap the
 * design promises), so its cost grows with the number of peers: ≈ 1 ms at
 * 5,000. Under churn, lease events arrive a few ms apart; swapping once per
 * event spent most of the daemon's CPU on copies of an almost identical table.
 *
 * The rule: a swap requested after a quiet spell runs at once (a single
 * lease change reaches the data plane with no added delay). A swap requested
 * sooner than `factor` × the recent swap cost after the previous one ends
 * waits until then, and every change made meanwhile rides along (the lease
 * watcher queues events while the backend's apply is pending, and hands them
 * over as one batch). Swapping then takes at most 1 / (factor + 1) of the
 * time during a burst, and the extra latency is bounded by the gap: ≈ 4 ms at
 * 5,000 peers, never more than `maxGapMs`. With few peers the gap is
 * near zero, so small clusters see no pacing at all.
 */

export interface PacerClock {
  /** Milliseconds, monotonic (performance.now()). */
  now(): number;
  /** Runs `fn` after `ms` (> 0); returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
}

export interface PacerOptions {
  /** Gap after a swap = factor × the recent swap cost. */
  readonly factor?: number;
  /** Upper bound of the gap, whatever a swap costs. */
  readonly maxGapMs?: number;
}

export const DEFAULT_PACER: Required<PacerOptions> = { factor: 4, maxGapMs: 20 };

/** The daemon's clock: performance.now and setTimeout. */
export const realClock: PacerClock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** Weight of the newest sample in the swap-cost average (one slow swap, e.g. a GC pause, does not stall the next ones). */
const COST_WEIGHT = 0.25;

export class SwapPacer {
  private readonly factor: number;
  private readonly maxGapMs: number;
  /** When the last swap ended; -Infinity before the first. */
  private lastEnd = Number.NEGATIVE_INFINITY;
  /** Recent swap cost (ms), an exponential average. */
  private costMs = 0;
  private pending: { promise: Promise<void>; cancel: () => void; reject: (e: unknown) => void } | null = null;
  /** Swaps run so far (tests, logs). */
  swaps = 0;

  constructor(
    private readonly swap: () => void,
    private readonly clock: PacerClock,
    opts: PacerOptions = {},
  ) {
    this.factor = opts.factor ?? DEFAULT_PACER.factor;
    this.maxGapMs = opts.maxGapMs ?? DEFAULT_PACER.maxGapMs;
  }

  /** How long after the last swap the next one may start. */
  get gapMs(): number {
    return Math.min(this.maxGapMs, this.factor * this.costMs);
  }

  /**
   * Asks for a swap of the state as it is now. Resolves once a swap that
   * started after this call has finished (at once, synchronously, if the gap
   * has passed), rejects with that swap's error. Calls while a swap waits
   * share it.
   */
  request(): Promise<void> {
    if (this.pending !== null) return this.pending.promise;
    const wait = this.lastEnd + this.gapMs - this.clock.now();
    if (wait <= 0) {
      try {
        this.run();
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    }
    let resolve: () => void = () => undefined;
    let reject: (e: unknown) => void = () => undefined;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const cancel = this.clock.after(wait, () => {
      this.pending = null;
      try {
        this.run();
        resolve();
      } catch (e) {
        reject(e);
      }
    });
    this.pending = { promise, cancel, reject };
    return promise;
  }

  /** Drops a waiting swap; its callers get `reason`. */
  cancel(reason: unknown): void {
    const p = this.pending;
    if (p === null) return;
    this.pending = null;
    p.cancel();
    p.reject(reason);
  }

  private run(): void {
    const t0 = this.clock.now();
    try {
      this.swap();
    } finally {
      const end = this.clock.now();
      const cost = end - t0;
      this.costMs = this.swaps === 0 ? cost : this.costMs + COST_WEIGHT * (cost - this.costMs);
      this.swaps++;
      this.lastEnd = end;
    }
  }
}
