/**
 * The host-gw backend: no encapsulation at all. Every host is the gateway of
 * its own subnet, so a peer's subnet is routed straight to the peer's
 * PublicIP on the shared L2 segment.
 *
 * Design notes
 * - Requirements: hosts share an L2 segment and talk without NAT. So
 *   prepare() (before any lease is taken, so nothing unusable is published)
 *   and start() fail with RudderError('E_BACKEND') when this host's PublicIP
 *   is not an address of the external interface (-public-ip behind NAT), and a peer
 *   whose PublicIP is not on a subnet directly connected through the external
 *   interface gets one clear error log naming its lease (and no route; it is
 *   retried on every reconcile, so an address added later fixes it).
 * - Per peer (BackendType "host-gw"; others logged once and ignored): one
 *   route `subnet via PublicIP dev <ext>` in the main table, protocol
 *   RTPROT_RUDDER. Overhead 0: the subnet file's MTU is the underlay MTU.
 * - Stale state: at start, `rudder0` (udp) and `rudder.<n>` VXLAN devices
 *   are deleted and every Rudder-protocol route of the main table that does
 *   not belong to a peer lease known at start (`peers`) is removed; matching
 *   routes are left alone, so a restarted (even SIGKILLed) daemon never
 *   interrupts traffic.
 * - Reconcile: the Rudder routes are compared with the peer table and fixed
 *   (planRoutes): a route someone deleted comes back, a foreign one goes. It
 *   runs when a kernel notification says so (a wanted route gone, a foreign
 *   Rudder route, the external link or its addresses changed; our own writes
 *   match the table and are ignored), every 30 s as a safety net, and every
 *   RECONCILE_MS when notifications are unavailable (common.ts). apply()
 *   writes without reading the table (replace requests). apply() and reconcile run one at
 *   a time; a failing reconcile is logged and retried, never an unhandled
 *   rejection.
 * - Failure: start() unwinds what it did on error or abort. stop() removes
 *   every peer route and closes the socket.
 */
import { RudderError, describeError } from '../../errors';
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import type { Logger } from '../../log';
import type { Lease, LeaseEvent } from '../../subnet/lease';
import { openNetlink as openRealNetlink, RTPROT_RUDDER, TABLE_MAIN, type AddrSpec, type Netlink } from '../../netlink';
import { defaultAfter, defaultEvery, pokeOnDrift, removeForeignDevices, serial, startReconcileLoop, type KernelSubscription } from '../common';
import type { KernelChange } from '../../netlink';
import type { Backend, BackendContext, ExternalInterface, Network } from '../types';
import { HostGwPeerTable, addStep, delStep, describePeer, describeStep, directlyConnected, planRoutes, type HostGwPeer, type HostGwStep } from './routes';

export { HostGwPeerTable, directlyConnected, planRoutes, type HostGwPeer, type HostGwStep } from './routes';

export const HOSTGW_OVERHEAD = 0;
export const RECONCILE_MS = 3_000;

export interface HostGwDeps {
  openNetlink?: () => Netlink;
  /** Runs `fn` every `ms`; returns a cancel function. Default: an unref'd setInterval. */
  every?: (ms: number, fn: () => void) => () => void;
  /** Runs `fn` once after `ms`; returns a cancel function. Default: an unref'd setTimeout. */
  after?: (ms: number, fn: () => void) => () => void;
}


class HostGwKernel {
  constructor(
    private readonly nl: Netlink,
    private readonly ext: ExternalInterface,
    private readonly log: Logger,
  ) {}

  removeForeignDevices(): Promise<void> {
    return removeForeignDevices(this.nl, null, this.log);
  }

  async addresses(): Promise<AddrSpec[]> {
    return (await this.nl.listAddresses(this.ext.index)).map(({ ip, prefix }) => ({ ip, prefix }));
  }

  rudderRoutes(): ReturnType<Netlink['listRoutes']> {
    return this.nl.listRoutes({ protocol: RTPROT_RUDDER, table: TABLE_MAIN });
  }

  /** Notifications about `ext`'s link and addresses and Rudder routes; null without them (fakes). */
  subscription(): KernelSubscription | null {
    return (onChange) => this.nl.watchKernel((index) => index === this.ext.index, onChange);
  }

  /**
   * Runs every step: all deletions as one batch, then all additions as one,
   * requests pipelined, without reading the table (every step comes from a
   * plan made from a dump, or from a lease event against the routes this
   * backend programmed; replace requests are idempotent). Returns one error
   * per failed step, naming it; the other steps are done regardless.
   */
  async runAll(steps: readonly HostGwStep[]): Promise<RudderError[]> {
    const dels = steps.filter((s): s is Extract<HostGwStep, { kind: 'del-route' }> => s.kind === 'del-route');
    const adds = steps.filter((s): s is Extract<HostGwStep, { kind: 'add-route' }> => s.kind === 'add-route');
    const errors: RudderError[] = [];
    const fail = (s: HostGwStep, e: unknown): void => {
      errors.push(new RudderError('E_BACKEND', `host-gw: ${describeStep(s)} dev ${this.ext.name} failed`, { cause: e }));
    };
    const dr = await this.nl.deleteRoutes(
      dels.map((s) => ({ dst: s.dst, table: s.table, metric: s.metric, ...(s.oif !== undefined ? { oif: s.oif } : {}), ...(s.gateway !== undefined ? { gateway: s.gateway } : {}) })),
    );
    dr.forEach((r, i) => r.error && fail(dels[i] as HostGwStep, r.error));
    const ar = await this.nl.ensureRoutes(
      adds.map((s) => ({ dst: s.dst, oif: this.ext.index, gateway: s.via, protocol: RTPROT_RUDDER, table: TABLE_MAIN })),
      { dump: false },
    );
    ar.forEach((r, i) => r.error && fail(adds[i] as HostGwStep, r.error));
    return errors;
  }

  /** runAll, then throws the first failure (with how many there were). */
  async run(steps: readonly HostGwStep[]): Promise<void> {
    throwFirst(await this.runAll(steps), 'route change(s) failed');
  }

  close(): void {
    this.nl.close();
  }
}

function throwFirst(errors: readonly RudderError[], what: string): void {
  if (errors.length === 0) return;
  if (errors.length === 1) throw errors[0];
  throw new RudderError('E_BACKEND', `host-gw: ${errors.length} ${what}; first: ${describeError(errors[0])}`, { cause: errors[0] });
}

/** host-gw cannot work behind NAT: the PublicIP must be an address of the external interface. */
function checkPublicIP(ext: ExternalInterface, addrs: readonly AddrSpec[]): void {
  if (addrs.some((a) => a.ip >>> 0 === ext.publicIP >>> 0)) return;
  throw new RudderError(
    'E_BACKEND',
    `host-gw: public IP ${formatIp(ext.publicIP)} is not an address of ${ext.name} (${addrs.map((a) => `${formatIp(a.ip)}/${a.prefix}`).join(', ') || 'no IPv4 address'}): ` +
      `host-gw routes peers' subnets via their public IPs, so hosts must share an L2 segment without NAT; drop -public-ip or use the vxlan or udp backend`,
  );
}

export function createHostGwBackend(ctx: BackendContext, deps: HostGwDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'host-gw' });
  const ext = ctx.extIface;
  const openNetlink = deps.openNetlink ?? openRealNetlink;
  const every = deps.every ?? defaultEvery;
  const after = deps.after ?? defaultAfter;

  return {
    type: 'host-gw',
    overhead: HOSTGW_OVERHEAD,

    /** Checks the PublicIP before a lease is taken, so a host that cannot work publishes nothing. */
    async prepare(): Promise<Record<string, unknown>> {
      const nl = openNetlink();
      try {
        checkPublicIP(ext, await new HostGwKernel(nl, ext, log).addresses());
      } finally {
        nl.close();
      }
      return {};
    },

    async start(own: Lease, signal: AbortSignal, peers: readonly Lease[] = []): Promise<Network> {
      const check = (next: string): void => {
        if (signal.aborted) throw new RudderError('E_BACKEND', `host-gw: start aborted before ${next}`, { cause: signal.reason });
      };
      check('opening netlink');
      const kernel = new HostGwKernel(openNetlink(), ext, log);
      const table = new HostGwPeerTable(own.subnet);
      table.apply(peers.map((lease) => ({ type: 'added' as const, lease })));
      let addrs: AddrSpec[];
      try {
        check('checking the public IP');
        addrs = await kernel.addresses();
        checkPublicIP(ext, addrs);
        check('removing stale devices');
        await kernel.removeForeignDevices();
        check('removing stale routes');
        // Against the peers known now: matching routes stay (no gap after a restart), the rest go.
        const plan = planRoutes(table.list().filter((p) => directlyConnected(addrs, p.publicIP)), await kernel.rudderRoutes(), ext.index);
        await kernel.run(plan);
        for (const s of plan) log.info(s.kind === 'add-route' ? 'route set' : 'removed stale state', { step: describeStep(s) });
        check('returning the network');
      } catch (e) {
        kernel.close();
        throw e;
      }
      log.info('host-gw backend started', { dev: ext.name, publicIP: formatIp(ext.publicIP), mtu: ext.mtu - HOSTGW_OVERHEAD });
      return startedNetwork({ kernel, addrs, log, every, after, ext, table });
    },
  };
}

interface Started {
  readonly kernel: HostGwKernel;
  readonly addrs: AddrSpec[];
  readonly log: Logger;
  readonly every: (ms: number, fn: () => void) => () => void;
  readonly after: (ms: number, fn: () => void) => () => void;
  readonly ext: ExternalInterface;
  /** Peers known at start (routes already set). */
  readonly table: HostGwPeerTable;
}

function startedNetwork({ kernel, addrs: initialAddrs, log, every, after, ext, table }: Started): Network {
  let addrs = initialAddrs;
  /** Peers reported as not directly reachable (key → PublicIP), so each is logged once. */
  const unreachable = new Map<string, number>();
  let stopping: Promise<void> | undefined;
  const queue = serial();

  /** Peers that can get a route; logs the others once. */
  const reachable = (peers: readonly HostGwPeer[]): HostGwPeer[] => {
    const out: HostGwPeer[] = [];
    for (const p of peers) {
      if (directlyConnected(addrs, p.publicIP)) {
        if (unreachable.delete(p.key)) log.info('peer is directly reachable now', { peer: describePeer(p) });
        out.push(p);
      } else if (unreachable.get(p.key) !== p.publicIP) {
        unreachable.set(p.key, p.publicIP);
        log.error(`host-gw: not routing lease ${p.key}: its PublicIP ${formatIp(p.publicIP)} is not on a subnet directly connected to ${ext.name}; host-gw needs every host on one L2 segment (use vxlan otherwise)`, {
          subnet: formatCidr(p.subnet),
          publicIP: formatIp(p.publicIP),
          key: p.key,
          connected: addrs.map((a) => `${formatIp(a.ip)}/${a.prefix}`).join(','),
        });
      }
    }
    return out;
  };

  const reconcile = async (): Promise<void> => {
    addrs = await kernel.addresses();
    const plan = planRoutes(reachable(table.list()), await kernel.rudderRoutes(), ext.index);
    if (plan.length === 0) return;
    log.warn('kernel routes drifted; repairing', { steps: plan.map(describeStep).join('; ') });
    await kernel.run(plan);
  };
  /** Whether a notification may mean the kernel no longer matches the peer table. */
  const drifted = (ch: KernelChange): boolean => {
    if (ch.kind === 'lost' || ch.kind === 'link' || ch.kind === 'addr') return true; // link/addr: ext only (filtered)
    if (ch.kind !== 'route' || ch.route.table !== TABLE_MAIN) return false;
    const r = ch.route;
    const p = table.get(cidrToKey(r.dst));
    const ours = p !== undefined && r.oif === ext.index && r.gateway === p.publicIP >>> 0 && r.metric === 0;
    // A route we want went away, or a Rudder route we did not make appeared (our own writes match).
    return ch.op === 'del' ? ours : !ours;
  };
  const cancelReconcile = startReconcileLoop({
    name: 'host-gw',
    everyMs: RECONCILE_MS,
    every,
    after,
    serial: queue,
    log,
    reconcile,
    stopped: () => stopping !== undefined,
    watch: pokeOnDrift(kernel.subscription(), drifted),
  });

  return {
    mtu: ext.mtu - HOSTGW_OVERHEAD,
    apply(events: readonly LeaseEvent[]): Promise<void> {
      if (stopping !== undefined) return Promise.reject(new RudderError('E_BACKEND', 'host-gw: apply after stop'));
      return queue.run(async () => {
        const ch = table.apply(events);
        for (const l of ch.ignored) log.warn('ignoring lease of another backend', { subnet: formatCidr(l.subnet), backend: l.backendType, key: cidrToKey(l.subnet) });
        for (const p of ch.removed) unreachable.delete(p.key);
        const reach = reachable(ch.added);
        const errors = await kernel.runAll([...ch.removed.map((p) => delStep(p, ext.index)), ...reach.map(addStep)]);
        if (log.verbosity >= 1) {
          for (const p of ch.removed) log.debug('route removed', { route: describePeer(p) });
          for (const p of reach) log.debug('route set', { route: describePeer(p) });
        }
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `host-gw: ${errors.length} route change(s) failed (the next reconcile retries): ${describeError(errors[0])}`, { cause: errors[0] });
        }
      });
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        cancelReconcile();
        await queue.idle();
        const errors = await kernel.runAll(table.list().reverse().map((p) => delStep(p, ext.index)));
        for (const e of errors) log.warn('host-gw: removing a route failed', { error: describeError(e) });
        kernel.close();
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `host-gw: stop left ${errors.length} route(s) behind: ${describeError(errors[0])}`, { cause: errors[0] });
        }
        log.info('host-gw backend stopped');
      })();
      return stopping;
    },
  };
}
