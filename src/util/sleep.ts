/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * A sleep that another part of the program can cut short: `wait` resolves
 * after `ms` (clamped to what a timer takes), when `signal` aborts, or when
 * `wake()` is called, whichever comes first. One wait at a time; a `wake()`
 * with nobody waiting does nothing.
 */
export class Wakeable {
  private waiting: (() => void) | null = null;

  wake(): void {
    this.waiting?.();
  }

  wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        this.waiting = null;
        resolve();
      };
      const t = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
      signal.addEventListener('abort', done, { once: true });
      this.waiting = done;
    });
  }
}
