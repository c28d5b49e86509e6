/**
 * Pieces every backend shares: the start guard (one AbortSignal checked
 * before each step, and an undo registered after each step that succeeded,
 * run in reverse on error, abort or stop), the timers for reconcile and
 * statistics, and the removal of devices another backend left behind
 * (switching Backend.Type and restarting must leave nothing of the old one).
 */
import { RudderError, describeError } from '../errors';
import type { Logger } from '../log';
import type { LinkInfo, Netlink } from '../netlink';

/** A backend's start in progress: the abort check before each step and the undo list after it. */
export class StartGuard {
  private readonly steps: Array<{ readonly what: string; readonly run: () => unknown }> = [];

  constructor(
    private readonly name: string,
    private readonly signal: AbortSignal,
  ) {}

  /** Throws E_BACKEND if the start was aborted; `next` names the step about to run. */
  check(next: string): void {
    if (this.signal.aborted) throw new RudderError('E_BACKEND', `${this.name}: start aborted before ${next}`, { cause: this.signal.reason });
  }

  /** Registers how to undo the step that just succeeded (or is about to run and may leave something behind). */
  undo(what: string, run: () => unknown): void {
    this.steps.push({ what, run });
  }

  /**
   * Runs the undo steps in reverse (on a failed start, and at stop), each even
   * if an earlier one failed; returns the failures (logged).
   */
  async unwind(log: Logger): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (let s = this.steps.pop(); s !== undefined; s = this.steps.pop()) {
      try {
        await s.run();
      } catch (e) {
        log.warn('undo step failed', { step: s.what, error: describeError(e) });
        errors.push(e);
      }
    }
    return errors;
  }
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
/** The wireguard backend's TUN device. */
export const WG_TUN = 'rudder-wg';
const VXLAN_NAME_RE = /^rudder(-v6)?\.\d+$/;

/** A device some Rudder backend creates: `rudder0` (udp), `rudder-wg` (wireguard) or a `rudder.<VNI>` / `rudder-v6.<VNI>` VXLAN device. */
export function isRudderDevice(l: Pick<LinkInfo, 'name' | 'kind'>): boolean {
  return l.name === UDP_TUN || l.name === WG_TUN || (VXLAN_NAME_RE.test(l.name) && l.kind === 'vxlan');
}

/** Deletes every Rudder device except `keep` (the caller's own: one name, or several). */
export async function removeForeignDevices(nl: Pick<Netlink, 'listLinks' | 'deleteLink'>, keep: string | readonly string[] | null, log: Logger): Promise<void> {
  const kept = new Set(keep === null ? [] : typeof keep === 'string' ? [keep] : keep);
  for (const l of await nl.listLinks()) {
    if (kept.has(l.name) || !isRudderDevice(l)) continue;
    if (await nl.deleteLink(l.index)) log.info('removed stale device', { dev: l.name, kind: l.kind });
  }
}
