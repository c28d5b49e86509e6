/**
 * The runtime of the kernel backends (vxlan, host-gw): everything but what
 * differs between them. A backend hands it a peer table and a driver — its
 * planner and its kernel calls — and gets a Network that:
 *   - starts under one AbortSignal with an undo list (the netlink socket
 *     first; the backend's own setup steps after), then makes the kernel
 *     match the peers known at start: what matches stays (a restarted daemon
 *     never interrupts traffic), everything else of Rudder's goes;
 *   - applies lease events one batch at a time (the table's diff, then the
 *     driver's steps as a few pipelined batches, without reading the kernel);
 *   - reconciles — the driver's plan from a fresh dump — when a kernel
 *     notification says the kernel may have drifted from the table, every
 *     SAFETY_NET_MS as a safety net, and every `everyMs` when notifications
 *     are unavailable; apply, reconcile and stop never interleave, and a
 *     failing reconcile is logged once per distinct error and retried;
 *   - stops: removes every peer's kernel state, then runs the undo list in
 *     reverse.
 */
import { RudderError, describeError } from '../errors';
import type { Logger } from '../log';
import type { Lease, LeaseEvent } from '../subnet/lease';
import { openNetlink as openRealNetlink, type KernelChange, type Netlink } from '../netlink';
import { StartGuard, defaultAfter, defaultEvery } from './common';
import { logIgnored, type PeerChange, type PeerTable } from './peers';
import type { Network } from './types';

/** What differs per kernel backend: how it plans and how it talks to the kernel. */
export interface KernelDriver<P extends object, S> {
  /**
   * Reads the kernel and returns the steps that make it match `peers`
   * (stale state removed first). Called at start and on every reconcile.
   */
  plan(peers: readonly P[]): Promise<S[]>;
  /** Steps for one batch of peer changes, against state this backend programmed: removals first. */
  changeSteps(ch: PeerChange<P>): S[];
  /** Steps that remove every one of `peers` (stop). */
  removeSteps(peers: readonly P[]): S[];
  /** Runs steps as a few batches; one error per failed step (the others are done regardless). */
  run(steps: readonly S[]): Promise<RudderError[]>;
  describeStep(s: S): string;
  /** Whether a step removes state (for logs). */
  isRemoval(s: S): boolean;
  /** The links whose notifications concern this backend (asked per notification). */
  watches(index: number): boolean;
  /** Whether a notification may mean the kernel no longer matches the table (our own writes match it). */
  drifted(ch: KernelChange): boolean;
}

/** What tests replace: the netlink facade and the timers. */
export interface KernelDeps {
  openNetlink?: () => Netlink;
  /** Runs `fn` every `ms`; returns a cancel function. Default: an unref'd setInterval. */
  every?: (ms: number, fn: () => void) => () => void;
  /** Runs `fn` once after `ms`; returns a cancel function. Default: an unref'd setTimeout. */
  after?: (ms: number, fn: () => void) => () => void;
}

export interface KernelNetworkOptions<P extends object, S> {
  /** Backend name for messages (`vxlan`). */
  readonly name: string;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly mtu: number;
  /** The backend's peer table (empty); `list()` in a stable order. */
  readonly table: PeerTable<P> & { list(): P[] };
  /** Leases known at start (the daemon applies the current ones right after start either way). */
  readonly peers: readonly Lease[];
  readonly deps: KernelDeps;
  /** Reconcile period without kernel notifications. */
  readonly everyMs: number;
  /** Log messages for a step that programs or removes peer state (`route set`, `route removed`). */
  readonly say: { readonly set: string; readonly removed: string };
  /** Logs a lease of this backend's type it cannot use (each once). */
  readonly logInvalid?: (l: Lease) => void;
  /** The backend's own start steps, once the netlink socket is open; returns its driver. */
  readonly setup: (nl: Netlink, start: StartGuard) => Promise<KernelDriver<P, S>>;
  /** Fields of the "backend started" log line. */
  readonly started: Record<string, unknown>;
}

function throwFirst(name: string, errors: readonly unknown[], what: string): void {
  if (errors.length === 0) return;
  if (errors.length === 1) throw errors[0];
  throw new RudderError('E_BACKEND', `${name}: ${errors.length} ${what}; first: ${describeError(errors[0])}`, { cause: errors[0] });
}

/** Starts a kernel backend's network (see the file comment); on failure or abort nothing is left behind. */
export async function startKernelNetwork<P extends object, S>(o: KernelNetworkOptions<P, S>): Promise<Network> {
  const { name, log, table } = o;
  const start = new StartGuard(name, o.signal);
  const known = table.apply(o.peers.map((lease) => ({ type: 'added' as const, lease })));
  logIgnored(log, known.ignored);
  for (const l of known.invalid) o.logInvalid?.(l);
  let nl: Netlink;
  let driver: KernelDriver<P, S>;
  try {
    start.check('opening netlink');
    const opened = (o.deps.openNetlink ?? openRealNetlink)();
    nl = opened;
    start.undo('close netlink', () => opened.close());
    driver = await o.setup(opened, start);
    start.check('removing stale state');
    // Against the peers known now: matching state stays (no gap after a restart), the rest goes.
    const plan = await driver.plan(table.list());
    throwFirst(name, await driver.run(plan), 'steps failed');
    for (const s of plan) log.info(driver.isRemoval(s) ? 'removed stale state' : o.say.set, { step: driver.describeStep(s) });
    start.check('returning the network');
  } catch (e) {
    await start.unwind(log);
    throw e;
  }
  log.info(`${name} backend started`, o.started);
  return runningNetwork(o, nl, driver, start);
}

function runningNetwork<P extends object, S>(o: KernelNetworkOptions<P, S>, nl: Netlink, driver: KernelDriver<P, S>, start: StartGuard): Network {
  const { name, log, table } = o;
  let stopping: Promise<void> | undefined;
  // One kernel conversation at a time: apply, reconcile and stop never interleave.
  const queue = serial();
  const logSteps = (steps: readonly S[]): void => {
    if (log.verbosity < 1) return;
    for (const s of steps) log.debug(driver.isRemoval(s) ? o.say.removed : o.say.set, { step: driver.describeStep(s) });
  };

  const cancelReconcile = startReconcileLoop({
    name,
    everyMs: o.everyMs,
    every: o.deps.every ?? defaultEvery,
    after: o.deps.after ?? defaultAfter,
    serial: queue,
    log,
    reconcile: async () => {
      const plan = await driver.plan(table.list());
      if (plan.length === 0) return;
      log.warn('kernel state drifted; repairing', { steps: plan.map((s) => driver.describeStep(s)).join('; ') });
      throwFirst(name, await driver.run(plan), 'steps failed');
    },
    stopped: () => stopping !== undefined,
    watch: pokeOnDrift((onChange) => nl.watchKernel((index) => driver.watches(index), onChange), (ch) => driver.drifted(ch)),
  });

  return {
    mtu: o.mtu,
    apply(events: readonly LeaseEvent[]): Promise<void> {
      if (stopping !== undefined) return Promise.reject(new RudderError('E_BACKEND', `${name}: apply after stop`));
      return queue.run(async () => {
        const ch = table.apply(events);
        logIgnored(log, ch.ignored);
        for (const l of ch.invalid) o.logInvalid?.(l);
        const steps = driver.changeSteps(ch);
        const errors = await driver.run(steps);
        logSteps(steps);
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `${name}: ${errors.length} change(s) failed (the next reconcile retries): ${describeError(errors[0])}`, { cause: errors[0] });
        }
      });
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        cancelReconcile();
        await queue.idle();
        const errors: unknown[] = await driver.run(driver.removeSteps(table.list().reverse()));
        for (const e of errors) log.warn(`${name}: removing peer state failed`, { error: describeError(e) });
        errors.push(...(await start.unwind(log)));
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `${name}: stop left ${errors.length} step(s) undone: ${describeError(errors[0])}`, { cause: errors[0] });
        }
        log.info(`${name} backend stopped`);
      })();
      return stopping;
    },
  };
}

// ---------------------------------------------------------------------------
// The reconcile loop

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
 */
export function pokeOnDrift(subscribe: KernelSubscription, drifted: (ch: KernelChange) => boolean): ReconcileLoop['watch'] {
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
