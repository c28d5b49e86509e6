/**
 * Pieces every backend shares: undo lists (start() registers an undo after
 * each step and unwinds them in reverse on error, abort or stop), the
 * periodic timer for reconcile and statistics, and the removal of devices
 * another backend left behind (switching Backend.Type and restarting must
 * leave nothing of the old one).
 */
import { describeError } from '../errors';
import type { Logger } from '../log';
import type { KernelChange, LinkInfo, Netlink } from '../netlink';

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

/** Runs `fn` once after `ms` on a timer that never keeps the process alive; returns a cancel function. */
export function defaultAfter(ms: number, fn: () => void): () => void {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
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
  /** Period of the timer when there is no `watch` (or subscribing failed). */
  readonly everyMs: number;
  readonly every: (ms: number, fn: () => void) => () => void;
  /** One-shot timer of the debounced and retried rounds. */
  readonly after: (ms: number, fn: () => void) => () => void;
  readonly serial: Serial;
  readonly log: Logger;
  /** Compares the kernel with what should be there and repairs the difference. */
  readonly reconcile: () => Promise<void>;
  /** True once stop() began: no more rounds are queued. */
  readonly stopped: () => boolean;
  /**
   * Subscribes to kernel change notifications and calls `poke` when the
   * kernel may have drifted from what the backend programmed; returns the
   * unsubscribe function. With it, a round runs shortly after a poke, and
   * the timer is only a slow safety net (SAFETY_NET_MS).
   */
  readonly watch?: (poke: (why: string) => void) => () => void;
}

/** Subscribes to kernel change notifications the backend filtered to its links; returns the unsubscribe function. */
export type KernelSubscription = (onChange: (ch: KernelChange) => void) => () => void;

/**
 * The `watch` of a ReconcileLoop: pokes for the notifications `drifted`
 * says may leave the kernel unlike what the backend programmed (its own
 * writes come back as notifications too, and must not start a round).
 * Without a subscription (a netlink fake without notifications) there is no
 * watch, and the loop falls back to its timer.
 */
export function pokeOnDrift(subscribe: KernelSubscription | null, drifted: (ch: KernelChange) => boolean): ReconcileLoop['watch'] {
  if (subscribe === null) return undefined;
  return (poke) =>
    subscribe((ch) => {
      if (drifted(ch)) poke(ch.kind === 'lost' ? `notifications lost: ${ch.reason}` : `${ch.kind} ${ch.op}`);
    });
}

/** With kernel notifications: the periodic full comparison, in case a notification was missed. */
export const SAFETY_NET_MS = 30_000;
/** Pokes within this window share one round (a link flap or a `ip route flush` is many notifications). */
export const POKE_DEBOUNCE_MS = 100;
/** After a failed round, the next one comes this soon (a link still coming up, say). */
export const RETRY_MS = 2_000;

/**
 * Runs `reconcile` when the kernel reports a change that concerns the
 * backend (someone deleted a route or the device; a link flap took routes
 * with it), and periodically as a safety net — or, without notifications,
 * periodically only. A failure is logged once per distinct message, and its
 * recovery once, so a persistent fault does not flood logs, and retried.
 * Returns the cancel function.
 */
export function startReconcileLoop(o: ReconcileLoop): () => void {
  let lastError = '';
  let pending: (() => void) | null = null;
  let retry: (() => void) | null = null;
  const round = (): void => {
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
        if (unwatch !== null && retry === null && !o.stopped()) {
          retry = o.after(RETRY_MS, () => {
            retry = null;
            round();
          });
        }
      },
    );
  };
  const poke = (why: string): void => {
    if (pending !== null || o.stopped()) return;
    if (o.log.verbosity >= 1) o.log.debug('kernel changed; reconciling', { why });
    pending = o.after(POKE_DEBOUNCE_MS, () => {
      pending = null;
      round();
    });
  };
  let unwatch: (() => void) | null = null;
  if (o.watch !== undefined) {
    try {
      unwatch = o.watch(poke);
    } catch (e) {
      o.log.warn(`${o.name}: no kernel change notifications; comparing with the kernel every ${o.everyMs} ms instead`, { error: describeError(e) });
    }
  }
  const cancelTimer = o.every(unwatch !== null ? SAFETY_NET_MS : o.everyMs, round);
  // Changes between the start's read and the subscription would otherwise wait for the safety net.
  if (unwatch !== null) poke('subscribed');
  return () => {
    cancelTimer();
    unwatch?.();
    pending?.();
    retry?.();
    pending = retry = null;
  };
}
