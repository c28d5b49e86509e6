/**
 * Controllable timers for the kernel backends' reconcile loop: `every`
 * registers the periodic round (tick() runs it), `after` the debounced and
 * retry rounds (runPending() runs them). Nothing runs on its own.
 */
export class FakeTimer {
  fn: (() => void) | undefined;
  ms: number | undefined;
  cancelled = 0;
  private pending: Array<{ fn: () => void; live: boolean }> = [];

  every = (ms: number, fn: () => void): (() => void) => {
    this.ms = ms;
    this.fn = fn;
    return () => {
      this.cancelled++;
      this.fn = undefined;
    };
  };

  after = (_ms: number, fn: () => void): (() => void) => {
    const t = { fn, live: true };
    this.pending.push(t);
    return () => void (t.live = false);
  };

  /** One-shot timers waiting now. */
  get waiting(): number {
    return this.pending.filter((t) => t.live).length;
  }

  /** Runs one periodic round and lets its promise chain settle. */
  async tick(): Promise<void> {
    this.fn?.();
    await settle();
  }

  /** Runs the one-shot timers due now (a poke's round) and lets them settle. */
  async runPending(): Promise<void> {
    const due = this.pending.filter((t) => t.live);
    this.pending = [];
    for (const t of due) {
      t.live = false;
      t.fn();
    }
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}
