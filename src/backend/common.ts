/**
 * Pieces every backend shares: undo lists (start() registers an undo after
 * each step and unwinds them in reverse on error, abort or stop), the
 * periodic timer for reconcile and statistics, and the removal of devices
 * another backend left behind (switching Backend.Type and restarting must
 * leave nothing of the old one).
 */
import { describeError } from '../errors';
import type { Logger } from '../log';
import type { LinkInfo, Netlink } from '../netlink';

export type Undo = { readonly what: string; readonly run: () => Promise<unknown> | unknown };

/** Runs undo steps in reverse, each even if an earlier one failed; returns the failures (logged). */
export async function unwind(steps: Undo[], log: Logger): Promise<unknown[]> {
  const errors: unknown[] = [];
  while (steps.length > 0) {
    const s = steps.pop() as Undo;
    try {
      await s.run();
    } catch (e) {
      log.warn('undo step failed', { step: s.what, error: describeError(e) });
      errors.push(e);
    }
  }
  return errors;
}

/** Runs `fn` every `ms` on a timer that never keeps the process alive; returns a cancel function. */
export function defaultEvery(ms: number, fn: () => void): () => void {
  const t = setInterval(fn, ms);
  t.unref();
  return () => clearInterval(t);
}

/** The udp backend's TUN device. */
export const UDP_TUN = 'rudder0';
const VXLAN_NAME_RE = /^rudder\.\d+$/;

/** A device some Rudder backend creates: `rudder0` (udp) or a `rudder.<VNI>` VXLAN device. */
export function isRudderDevice(l: Pick<LinkInfo, 'name' | 'kind'>): boolean {
  return l.name === UDP_TUN || (VXLAN_NAME_RE.test(l.name) && l.kind === 'vxlan');
}

/** Deletes every Rudder device except `keep` (the caller's own). */
export async function removeForeignDevices(nl: Pick<Netlink, 'listLinks' | 'deleteLink'>, keep: string | null, log: Logger): Promise<void> {
  for (const l of await nl.listLinks()) {
    if (l.name === keep || !isRudderDevice(l)) continue;
    if (await nl.deleteLink(l.index)) log.info('removed stale device', { dev: l.name, kind: l.kind });
  }
}

/** Runs tasks one at a time in call order, so apply() and reconcile never interleave kernel changes. */
export interface Serial {
  run<T>(fn: () => Promise<T>): Promise<T>;
  /** Resolves when every task queued so far has settled. */
  idle(): Promise<void>;
}

export function serial(): Serial {
  let queue: Promise<unknown> = Promise.resolve();
  return {
    run<T>(fn: () => Promise<T>): Promise<T> {
      const p = queue.then(fn);
      queue = p.catch(() => undefined);
      return p;
    },
    idle: () => queue.then(() => undefined),
  };
}

export interface ReconcileLoop {
  /** Backend name for messages. */
  readonly name: string;
  readonly everyMs: number;
  readonly every: (ms: number, fn: () => void) => () => void;
  readonly serial: Serial;
  readonly log: Logger;
  /** Compares the kernel with what should be there and repairs the difference. */
  readonly reconcile: () => Promise<void>;
  /** True once stop() began: no more rounds are queued. */
  readonly stopped: () => boolean;
}

/**
 * Runs `reconcile` periodically (someone deleted a route or the device; a
 * link flap took routes with it). A failure is logged once per distinct
 * message, and its recovery once, so a persistent fault does not flood logs.
 * Returns the cancel function.
 */
export function startReconcileLoop(o: ReconcileLoop): () => void {
  let lastError = '';
  return o.every(o.everyMs, () => {
    if (o.stopped()) return;
    o.serial.run(o.reconcile).then(
      () => {
        if (lastError !== '') o.log.info('reconcile succeeded again');
        lastError = '';
      },
      (e) => {
        const m = describeError(e);
        if (m !== lastError) o.log.error(`${o.name}: reconcile failed; retrying`, { error: m });
        lastError = m;
      },
    );
  });
}
