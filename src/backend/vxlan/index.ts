/**
 * The vxlan backend: the kernel's VXLAN device carries the overlay; Rudder
 * only programs it over rtnetlink (no packet ever touches JavaScript).
 *
 * Design notes
 * - Device: `rudder.<VNI>` (Backend.VNI, default 1), UDP port Backend.Port
 *   (default 8472), learning off, local = the external interface's address,
 *   bound to that interface; MTU = underlay MTU − 50 (outer IPv4 20 + UDP 8 +
 *   VXLAN 8 + inner Ethernet 14); address = the lease's network address /32
 *   (10.0.5.0/32; .1 stays free for the container bridge); up. ensureVxlan
 *   replaces a device of that name with other parameters.
 * - VTEP MAC: derived from this host's PublicIP and the VNI (peers.ts,
 *   `vtepMac`), so it is the same on every start — after a clean stop, a
 *   crash, or someone deleting the device — without a state file or a read of
 *   our own lease (which prepare() cannot have yet). Peers' FDB and neighbor
 *   entries therefore stay valid across our restarts. prepare() only
 *   computes it; the device is created in start(), so a daemon stopped while
 *   acquiring its lease leaves nothing behind.
 * - Peers (peers.ts): only leases with BackendType "vxlan" and a valid
 *   VtepMAC; others are logged once and ignored. Per peer: neighbor, FDB,
 *   route (RTPROT_RUDDER, onlink), in that order; removal in reverse. A
 *   changed lease is a removal plus an addition.
 * - Stale state: at start, devices of other backends or VNIs (`rudder0`,
 *   other `rudder.<n>` VXLAN devices) are deleted, and every Rudder-protocol
 *   route and every neighbor/FDB entry on our device that does not belong to
 *   a peer lease known at start (`peers`) is removed; what matches is left
 *   alone, so a restarted (even SIGKILLed) daemon never interrupts traffic.
 * - Reconcile: on a kernel notification that the backend's state changed
 *   (the device, the underlay link, a wanted route/neighbor/FDB entry gone
 *   or a foreign one added; our own writes match the peer table and are
 *   ignored), every 30 s as a safety net, and every RECONCILE_MS when
 *   notifications are unavailable (common.ts), the device is ensured
 *   (re-created if deleted: all peers re-programmed), then the kernel's
 *   routes/neighbors/FDB are compared with the peer table and fixed in one
 *   plan (planReconcile). apply() and reconcile run one at a time. A failing
 *   reconcile is logged, never an unhandled rejection; the next one retries.
 * - Failure: start() registers an undo after each step and unwinds them in
 *   reverse on error or abort. stop() unprograms every peer (route, FDB,
 *   neighbor), deletes the device and closes the socket.
 */
import { RudderError, describeError } from '../../errors';
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import type { Logger } from '../../log';
import type { Lease, LeaseEvent } from '../../subnet/lease';
import { openNetlink as openRealNetlink, RTPROT_RUDDER, TABLE_MAIN, type BatchResult, type KernelChange, type Netlink, type VxlanSpec } from '../../netlink';
import type { Backend, BackendContext, Network } from '../types';
import { defaultAfter, defaultEvery, removeForeignDevices, unwind, type Undo } from '../common';
import { pokeOnDrift, serial, startReconcileLoop, type KernelSubscription } from '../runtime';
import { VxlanPeerTable, changeSteps, describePeer, describeStep, peerVtepIp, planReconcile, stopSteps, vtepMac, type VxlanStep } from './peers';

export { VxlanPeerTable, vtepMac, leaseMac, planReconcile, programSteps, unprogramSteps, changeSteps, peerUse, type PeerUse, type VxlanPeer, type VxlanStep } from './peers';

export const VXLAN_OVERHEAD = 50;
export const DEFAULT_VNI = 1;
export const DEFAULT_VXLAN_PORT = 8472;
export const RECONCILE_MS = 5_000;

export const deviceName = (vni: number): string => `rudder.${vni}`;

export interface VxlanDeps {
  openNetlink?: () => Netlink;
  /** Runs `fn` every `ms`; returns a cancel function. Default: an unref'd setInterval. */
  every?: (ms: number, fn: () => void) => () => void;
  /** Runs `fn` once after `ms`; returns a cancel function. Default: an unref'd setTimeout. */
  after?: (ms: number, fn: () => void) => () => void;
}


/** The kernel side: the device and the per-peer objects on it. */
class VxlanKernel {
  devIndex = 0;

  constructor(
    private readonly nl: Netlink,
    private readonly spec: VxlanSpec,
    private readonly own: Lease,
    private readonly mtu: number,
    private readonly log: Logger,
  ) {}

  /** Deletes `rudder0` and VXLAN devices of other VNIs (other backends' and runs' leftovers). */
  removeForeignDevices(): Promise<void> {
    return removeForeignDevices(this.nl, this.spec.name, this.log);
  }

  /** Creates or fixes the device; true if it had to be (re)created. */
  async ensureDevice(): Promise<boolean> {
    const link = await this.nl.ensureVxlan(this.spec);
    this.devIndex = link.index;
    await this.nl.ensureAddresses(link.index, [{ ip: this.own.subnet.ip, prefix: 32 }]);
    await this.nl.ensureMtu(link.index, this.mtu);
    await this.nl.ensureLinkUp(link.index);
    return link.changed;
  }

  async deleteDevice(): Promise<void> {
    const l = await this.nl.linkByName(this.spec.name);
    if (l !== null) await this.nl.deleteLink(l.index);
  }

  async readState(): Promise<{ routes: Awaited<ReturnType<Netlink['listRoutes']>>; neighbors: Awaited<ReturnType<Netlink['listNeighbors']>>; fdb: Awaited<ReturnType<Netlink['listFdb']>> }> {
    return {
      routes: await this.nl.listRoutes({ protocol: RTPROT_RUDDER, table: TABLE_MAIN }),
      neighbors: await this.nl.listNeighbors(this.devIndex),
      fdb: await this.nl.listFdb(this.devIndex),
    };
  }

  /**
   * Runs every step as a few batches, in the order the plans need: route,
   * FDB, neighbor deletions, then neighbor, FDB, route additions (requests
   * pipelined on the socket, no dump: every step comes from a plan made from
   * a dump or from a lease event against what this backend programmed, and
   * the replace requests are idempotent). A route is not added
   * when its peer's neighbor or FDB entry failed (the kernel must never send
   * into an unresolved next hop). Returns one error per failed or skipped
   * step; the others are done regardless.
   */
  async runAll(steps: readonly VxlanStep[]): Promise<RudderError[]> {
    const b = this.nl;
    const blind = { dump: false };
    const index = this.devIndex;
    const errors: RudderError[] = [];
    const fail = (s: VxlanStep, e: unknown): void => {
      errors.push(new RudderError('E_BACKEND', `vxlan: ${describeStep(s)} on ${this.spec.name} failed`, { cause: e }));
    };
    const of = <K extends VxlanStep['kind']>(kind: K): Array<Extract<VxlanStep, { kind: K }>> => steps.filter((s): s is Extract<VxlanStep, { kind: K }> => s.kind === kind);
    const check = <T extends VxlanStep>(list: readonly T[], results: readonly BatchResult[], onFail?: (s: T) => void): void => {
      results.forEach((r, i) => {
        if (!r.error) return;
        fail(list[i] as T, r.error);
        onFail?.(list[i] as T);
      });
    };
    const delRoutes = of('del-route');
    if (delRoutes.length) {
      check(delRoutes, await b.deleteRoutes(delRoutes.map((s) => ({ dst: s.dst, table: s.table, metric: s.metric, ...(s.oif !== undefined ? { oif: s.oif } : {}), ...(s.gateway !== undefined ? { gateway: s.gateway } : {}) }))));
    }
    const delFdb = of('del-fdb');
    if (delFdb.length) check(delFdb, await b.deleteFdbs(delFdb.map((s) => ({ index, mac: s.mac, dst: s.dst }))));
    const delNeigh = of('del-neigh');
    if (delNeigh.length) check(delNeigh, await b.deleteNeighbors(delNeigh.map((s) => ({ index, ip: s.ip }))));
    const badNeigh = new Set<number>();
    const macOf = new Map<number, string>();
    const addNeigh = of('add-neigh');
    for (const s of addNeigh) macOf.set(s.ip >>> 0, s.mac);
    if (addNeigh.length) check(addNeigh, await b.ensureNeighbors(addNeigh.map((s) => ({ index, ip: s.ip, mac: s.mac })), blind), (s) => badNeigh.add(s.ip >>> 0));
    const badMac = new Set<string>();
    const addFdb = of('add-fdb');
    if (addFdb.length) check(addFdb, await b.ensureFdbs(addFdb.map((s) => ({ index, mac: s.mac, dst: s.dst })), blind), (s) => badMac.add(s.mac));
    const addRoute: Array<Extract<VxlanStep, { kind: 'add-route' }>> = [];
    for (const s of of('add-route')) {
      const mac = macOf.get(s.via >>> 0);
      if (badNeigh.has(s.via >>> 0) || (mac !== undefined && badMac.has(mac))) fail(s, new Error('not added: its neighbor or FDB entry failed'));
      else addRoute.push(s);
    }
    if (addRoute.length) {
      check(addRoute, await b.ensureRoutes(addRoute.map((s) => ({ dst: s.dst, oif: index, gateway: s.via, onlink: true, protocol: RTPROT_RUDDER, table: TABLE_MAIN })), blind));
    }
    return errors;
  }

  /** Notifications about the device, the underlay link and Rudder routes; null without them (fakes). */
  subscription(underlay: number | undefined): KernelSubscription {
    // devIndex is read per notification: a re-created device gets a new index.
    return (onChange) => this.nl.watchKernel((index) => index === this.devIndex || index === underlay, onChange);
  }

  /** runAll, then throws the first failure (with how many there were). */
  async run(steps: readonly VxlanStep[]): Promise<void> {
    const errors = await this.runAll(steps);
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new RudderError('E_BACKEND', `vxlan: ${errors.length} steps failed; first: ${describeError(errors[0])}`, { cause: errors[0] });
  }
}

export function createVxlanBackend(ctx: BackendContext, deps: VxlanDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'vxlan' });
  const vni = ctx.config.backend.VNI ?? DEFAULT_VNI;
  const port = ctx.config.backend.Port ?? DEFAULT_VXLAN_PORT;
  const name = deviceName(vni);
  const mtu = ctx.extIface.mtu - VXLAN_OVERHEAD;
  const mac = vtepMac(ctx.extIface.publicIP, vni);
  const openNetlink = deps.openNetlink ?? openRealNetlink;
  const every = deps.every ?? defaultEvery;
  const after = deps.after ?? defaultAfter;
  const spec: VxlanSpec = { name, vni, port, local: ctx.extIface.address, underlay: ctx.extIface.index, mac, learning: false };

  return {
    type: 'vxlan',
    overhead: VXLAN_OVERHEAD,

    async prepare(): Promise<Record<string, unknown>> {
      return { VtepMAC: mac };
    },

    async start(own: Lease, signal: AbortSignal, peers: readonly Lease[] = []): Promise<Network> {
      if (mtu < 68) {
        throw new RudderError('E_BACKEND', `vxlan: underlay ${ctx.extIface.name} MTU ${ctx.extIface.mtu} leaves ${mtu} after ${VXLAN_OVERHEAD} bytes of encapsulation: expected at least 68`);
      }
      const steps: Undo[] = [];
      const check = (next: string): void => {
        if (signal.aborted) throw new RudderError('E_BACKEND', `vxlan: start aborted before ${next}`, { cause: signal.reason });
      };
      let kernel: VxlanKernel;
      const table = new VxlanPeerTable(own.subnet);
      const known = table.apply(peers.map((lease) => ({ type: 'added' as const, lease })));
      for (const l of known.ignored) log.warn('ignoring lease of another backend', { subnet: formatCidr(l.subnet), backend: l.backendType, key: cidrToKey(l.subnet) });
      for (const l of known.invalid) log.error('ignoring vxlan lease without a valid VtepMAC', { subnet: formatCidr(l.subnet), key: cidrToKey(l.subnet), publicIP: formatIp(l.publicIP), VtepMAC: l.backendData['VtepMAC'] });
      try {
        check('opening netlink');
        const nl = openNetlink();
        steps.push({ what: 'close netlink', run: () => nl.close() });
        kernel = new VxlanKernel(nl, spec, own, mtu, log);

        check('removing stale devices');
        await kernel.removeForeignDevices();

        check(`creating ${name}`);
        steps.push({ what: `delete ${name}`, run: () => kernel.deleteDevice() });
        if (await kernel.ensureDevice()) log.info('device created', { dev: name });

        check('removing stale routes, neighbors and FDB entries');
        // Against the peers known now: matching state stays (no gap after a restart), the rest goes.
        const plan = planReconcile(table.list(), await kernel.readState(), kernel.devIndex);
        await kernel.run(plan);
        for (const s of plan) log.info(s.kind.startsWith('del') ? 'removed stale state' : 'programmed peer', { step: describeStep(s) });
        check('returning the network');
      } catch (e) {
        await unwind(steps, log);
        throw e;
      }
      log.info('vxlan backend started', {
        dev: name,
        vni,
        port,
        vtepMAC: mac,
        address: `${formatIp(own.subnet.ip)}/32`,
        mtu,
        local: formatIp(ctx.extIface.address),
        underlay: ctx.extIface.name,
      });
      return startedNetwork({ kernel, steps, log, every, after, mtu, table, underlay: ctx.extIface.index });
    },
  };
}

interface Started {
  readonly kernel: VxlanKernel;
  readonly steps: Undo[];
  readonly log: Logger;
  readonly every: (ms: number, fn: () => void) => () => void;
  readonly after: (ms: number, fn: () => void) => () => void;
  readonly mtu: number;
  /** Peers known at start (already programmed). */
  readonly table: VxlanPeerTable;
  /** Underlay link index (its flaps are worth a look). */
  readonly underlay: number;
}

function startedNetwork({ kernel, steps, log, every, after, mtu, table, underlay }: Started): Network {
  let stopping: Promise<void> | undefined;
  // One kernel conversation at a time: apply, reconcile and stop never interleave.
  const queue = serial();
  const reconcile = async (): Promise<void> => {
    if (await kernel.ensureDevice()) log.warn('device was missing or changed; re-created it, re-programming every peer', { peers: table.list().length });
    const plan = planReconcile(table.list(), await kernel.readState(), kernel.devIndex);
    if (plan.length === 0) return;
    log.warn('kernel state drifted; repairing', { steps: plan.map(describeStep).join('; ') });
    await kernel.run(plan);
  };

  /** Whether a notification may mean the kernel no longer matches the peer table (our own writes match it). */
  const drifted = (ch: KernelChange): boolean => {
    switch (ch.kind) {
      case 'lost':
      case 'link': // the device or the underlay (filtered)
        return true;
      case 'addr':
        return ch.index === kernel.devIndex;
      case 'route': {
        const r = ch.route;
        if (r.table !== TABLE_MAIN) return false;
        const p = table.get(cidrToKey(r.dst));
        const ours = p !== undefined && r.oif === kernel.devIndex && r.gateway === peerVtepIp(p) >>> 0 && r.onlink && r.metric === 0;
        return ch.op === 'del' ? ours : !ours;
      }
      case 'neigh': {
        if (ch.index !== kernel.devIndex) return false;
        const p = table.byVtep(ch.ip);
        const ours = p !== undefined && (ch.mac === undefined || ch.mac === p.mac);
        return ch.op === 'del' ? ours : !ours;
      }
      case 'fdb': {
        if (ch.index !== kernel.devIndex) return false;
        const ours = table.byMac(ch.mac)?.publicIP === ch.dst >>> 0;
        return ch.op === 'del' ? ours : !ours;
      }
    }
  };
  const cancelReconcile = startReconcileLoop({
    name: 'vxlan',
    everyMs: RECONCILE_MS,
    every,
    after,
    serial: queue,
    log,
    reconcile,
    stopped: () => stopping !== undefined,
    watch: pokeOnDrift(kernel.subscription(underlay), drifted),
  });

  return {
    mtu,
    apply(events: readonly LeaseEvent[]): Promise<void> {
      if (stopping !== undefined) return Promise.reject(new RudderError('E_BACKEND', 'vxlan: apply after stop'));
      return queue.run(async () => {
        const ch = table.apply(events);
        for (const l of ch.ignored) log.warn('ignoring lease of another backend', { subnet: formatCidr(l.subnet), backend: l.backendType, key: cidrToKey(l.subnet) });
        for (const l of ch.invalid) {
          log.error('ignoring vxlan lease without a valid VtepMAC', { subnet: formatCidr(l.subnet), key: cidrToKey(l.subnet), publicIP: formatIp(l.publicIP), VtepMAC: l.backendData['VtepMAC'] });
        }
        const errors = await kernel.runAll(changeSteps(ch, kernel.devIndex, table));
        if (log.verbosity >= 1) {
          for (const p of ch.removed) log.debug('peer removed', { peer: describePeer(p) });
          for (const p of ch.added) log.debug('peer programmed', { peer: describePeer(p) });
        }
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `vxlan: ${errors.length} peer change(s) failed (the next reconcile retries): ${describeError(errors[0])}`, { cause: errors[0] });
        }
      });
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        cancelReconcile();
        await queue.idle();
        const errors: unknown[] = await kernel.runAll(stopSteps(table.list().reverse(), kernel.devIndex));
        for (const e of errors) log.warn('vxlan: removing a peer failed', { error: describeError(e) });
        errors.push(...(await unwind(steps, log)));
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `vxlan: stop left ${errors.length} step(s) undone: ${describeError(errors[0])}`, { cause: errors[0] });
        }
        log.info('vxlan backend stopped');
      })();
      return stopping;
    },
  };
}
