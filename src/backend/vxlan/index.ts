/**
 * The vxlan backend: the kernel's VXLAN device carries the overlay; Rudder
 * only programs it over rtnetlink (no packet ever touches JavaScript). The
 * lifecycle (start, apply, reconcile, stop) is the kernel-network runtime's
 * (../runtime.ts), run once per address family; this file is the devices and
 * the drivers, peers.ts the pure planners of both families.
 *
 * - Device: `rudder.<VNI>` (Backend.VNI, default 1), UDP port Backend.Port
 *   (default 8472), learning off, local = the external interface's address,
 *   bound to that interface; MTU = underlay MTU − 50 (outer IPv4 20 + UDP 8 +
 *   VXLAN 8 + inner Ethernet 14); address = the lease's network address /32
 *   (10.0.5.0/32; .1 stays free for the container bridge); up. ensureVxlan
 *   replaces a device of that name with other parameters.
 * - IPv6 (EnableIPv6): a second device `rudder-v6.<VNI>`, an IPv6 VTEP on
 *   this host's PublicIPv6 (same VNI and port: the kernel keeps the families
 *   apart), MTU = underlay MTU − 70 (outer IPv6 40), address = the lease's
 *   IPv6 network address /128; its MAC (vtepMac6) is published in
 *   BackendV6Data as flannel does, `{"VNI":..,"VtepMAC":..}`. Its peers are
 *   the leases with an IPv6 subnet, a PublicIPv6 and that MAC (notV6Peer); a
 *   lease of a host without IPv6 is reached over IPv4 only (logged once).
 *   An IPv6-only network (EnableIPv4 false) has only this device. The
 *   subnet file's MTU is the smaller of the two.
 * - VTEP MACs: derived from this host's PublicIP (PublicIPv6) and the VNI
 *   (peers.ts `vtepMac`, `vtepMac6`), so they are the same on
 *   every start without a state file; peers' FDB and neighbor entries stay
 *   valid across our restarts. prepare() only computes them; the devices are
 *   created in start(), so a daemon stopped while acquiring its lease leaves
 *   nothing behind.
 * - Peers: leases with BackendType "vxlan" and a valid VtepMAC (others are
 *   logged once). Per peer: neighbor, FDB, route (onlink), in that order;
 *   removal in reverse.
 * - Stale state: at start, `rudder0` and other Rudder VXLAN devices (a
 *   `rudder-v6.<n>` too when IPv6 is off) are deleted, and every Rudder route
 *   (of the family) and neighbor/FDB entry on our devices that is not a peer's.
 * - Reconcile: each device is ensured first (re-created if deleted: every
 *   peer re-programmed), then routes/neighbors/FDB compared with the table.
 * - stop() unprograms every peer, then deletes the devices (IPv6 first).
 */
import { RudderError, describeError } from '../../errors';
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import { formatIp6 } from '../../ip/ipv6';
import type { Logger } from '../../log';
import { formatLeaseKey, hasIpv4, leaseName, type Lease, type LeaseEvent } from '../../subnet/lease';
import { ipv4Enabled } from '../../config';
import {
  RTPROT_RUDDER,
  TABLE_MAIN,
  type BatchResult,
  type EnsureOptions,
  type FdbSpecOf,
  type KernelChange,
  type Netlink,
  type NeighborKeyOf,
  type NeighborSpecOf,
  type RouteInfoOf,
  type RouteKeyOf,
  type RouteSpecOf,
  type VxlanSpec,
} from '../../netlink';
import type { Backend, BackendContext, Network } from '../types';
import { removeForeignDevices, type StartGuard } from '../common';
import { startKernelNetwork, type KernelDeps, type KernelDriver } from '../runtime';
import {
  VXLAN4,
  VXLAN6,
  Vxlan6PeerTable,
  VxlanPeerTable,
  notV6Peer,
  plans4,
  plans6,
  vtepMac,
  vtepMac6,
  type FamilyPeerTable,
  type PeerOf,
  type VxlanFamily,
  type VxlanKernelStateOf,
  type VxlanPlans,
  type VxlanStepOf,
} from './peers';

export {
  VxlanPeerTable,
  vtepMac,
  leaseMac,
  planReconcile,
  programSteps,
  unprogramSteps,
  changeSteps,
  peerUse,
  type PeerUse,
  type VxlanPeer,
  type VxlanStep,
  Vxlan6PeerTable,
  vtepMac6,
  leaseMac6,
  notV6Peer,
  planReconcile6,
  programSteps6,
  unprogramSteps6,
  changeSteps6,
  stopSteps6,
  peerUse6,
  type Vxlan6Peer,
  type Vxlan6Step,
} from './peers';

export const VXLAN_OVERHEAD = 50;
/** On an IPv6 underlay: the outer IPv6 header is 40 bytes, not 20. */
export const VXLAN6_OVERHEAD = 70;
import { DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI as DEFAULT_VNI } from '../../config';
export { DEFAULT_VNI, DEFAULT_VXLAN_PORT };
export const RECONCILE_MS = 5_000;

export const deviceName = (vni: number): string => `rudder.${vni}`;
/** The IPv6 VTEP's device (flannel's is `flannel-v6.<VNI>`). */
export const deviceName6 = (vni: number): string => `rudder-v6.${vni}`;
/** The kernel's limit on a device name (IFNAMSIZ − 1). */
const MAX_IFNAME = 15;

export function createVxlanBackend(ctx: BackendContext, deps: KernelDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'vxlan' });
  const vni = ctx.config.backend.VNI ?? DEFAULT_VNI;
  const port = ctx.config.backend.Port ?? DEFAULT_VXLAN_PORT;
  const v4 = ipv4Enabled(ctx.config);
  const v6 = ctx.config.ipv6 !== undefined;
  const name = deviceName(vni);
  const name6 = deviceName6(vni);
  const mac = vtepMac(ctx.extIface.publicIP, vni);
  const mac6 = ctx.extIface.publicIPv6 !== undefined ? vtepMac6(ctx.extIface.publicIPv6, vni) : undefined;
  // Every device this configuration keeps; any other Rudder device is stale.
  const keep = [...(v4 ? [name] : []), ...(v6 ? [name6] : [])];

  return {
    type: 'vxlan',
    overhead: v6 ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD,
    carriesIPv6: true,
    ...(v6 && mac6 !== undefined ? { backendV6Data: { VNI: vni, VtepMAC: mac6 } } : {}),

    async prepare(): Promise<Record<string, unknown>> {
      return v4 ? { VtepMAC: mac } : {};
    },

    async start(own: Lease, signal: AbortSignal, peers: readonly Lease[] = []) {
      let n4: Network | undefined;
      let n6: Network | undefined;
      try {
        if (v4) n4 = await startV4(ctx, { own, signal, peers: peers.filter(hasIpv4), deps, log, keep, vni, port, name, mac });
        if (v6) {
          if (ctx.extIface.publicIPv6 === undefined || mac6 === undefined) throw new RudderError('E_BACKEND', `vxlan: EnableIPv6 needs this host's PublicIPv6 (an IPv6 address on ${ctx.extIface.name}, or -public-ipv6)`);
          n6 = await startV6(ctx, { own, signal, peers, deps, log, keep, vni, port, name: name6, mac: mac6, publicIPv6: ctx.extIface.publicIPv6, v4 });
        }
      } catch (e) {
        await n4?.stop().catch((err: unknown) => log.warn('undo step failed', { error: describeError(err) }));
        throw e;
      }
      return families(n4, n6);
    },
  };
}

interface StartArgs {
  readonly own: Lease;
  readonly signal: AbortSignal;
  readonly peers: readonly Lease[];
  readonly deps: KernelDeps;
  readonly log: Logger;
  /** The devices of this configuration (both families). */
  readonly keep: readonly string[];
  readonly vni: number;
  readonly port: number;
  readonly name: string;
  readonly mac: string;
}

/** The IPv4 overlay: `rudder.<VNI>` and its peers. */
function startV4(ctx: BackendContext, a: StartArgs): Promise<Network> {
  const { log, name, vni, port, own } = a;
  const mtu = ctx.extIface.mtu - VXLAN_OVERHEAD;
  if (mtu < 68) {
    throw new RudderError('E_BACKEND', `vxlan: underlay ${ctx.extIface.name} MTU ${ctx.extIface.mtu} leaves ${mtu} after ${VXLAN_OVERHEAD} bytes of encapsulation: expected at least 68`);
  }
  const spec: VxlanSpec = { name, vni, port, local: ctx.extIface.address, underlay: ctx.extIface.index, mac: a.mac, learning: false };
  const table = new VxlanPeerTable(own.subnet);
  return startKernelNetwork({
    name: 'vxlan',
    log,
    signal: a.signal,
    mtu,
    table,
    peers: a.peers,
    deps: a.deps,
    everyMs: RECONCILE_MS,
    say: { set: 'peer programmed', removed: 'peer removed' },
    logInvalid: (l) =>
      log.error('ignoring vxlan lease without a valid VtepMAC', { subnet: formatCidr(l.subnet), key: cidrToKey(l.subnet), publicIP: formatIp(l.publicIP), VtepMAC: l.backendData['VtepMAC'] }),
    async setup(nl, start) {
      const dev = await setupDevice(nl, start, a, new VxlanDevice(nl, spec, (index) => nl.ensureAddresses(index, [{ ip: own.subnet.ip, prefix: 32 }]), mtu));
      const recreated = (peers: number): void => log.warn('device was missing or changed; re-created it, re-programming every peer', { peers });
      return vxlanDriver(dev, { fam: VXLAN4, calls: calls4(nl), plans: plans4, table, recreated }, ctx.extIface.index);
    },
    started: { dev: name, vni, port, vtepMAC: a.mac, address: `${formatIp(own.subnet.ip)}/32`, mtu, local: formatIp(ctx.extIface.address), underlay: ctx.extIface.name },
  });
}

/** The IPv6 overlay: `rudder-v6.<VNI>`, an IPv6 VTEP on the PublicIPv6, and its peers. */
function startV6(ctx: BackendContext, a: StartArgs & { readonly publicIPv6: bigint; readonly v4: boolean }): Promise<Network> {
  const { log, name, vni, port, own } = a;
  if (name.length > MAX_IFNAME) {
    throw new RudderError('E_BACKEND', `vxlan: Backend.VNI ${vni} makes the IPv6 device name ${name} longer than the kernel's ${MAX_IFNAME} characters: use a VNI up to 99999 with EnableIPv6`);
  }
  if (own.ipv6Subnet === undefined) throw new RudderError('E_BACKEND', `vxlan: EnableIPv6 is on but this host's lease ${formatLeaseKey(own)} has no IPv6 subnet`);
  const subnet6 = own.ipv6Subnet;
  const mtu = ctx.extIface.mtu - VXLAN6_OVERHEAD;
  if (mtu < 1280) {
    throw new RudderError('E_BACKEND', `vxlan: underlay ${ctx.extIface.name} MTU ${ctx.extIface.mtu} leaves ${mtu} after ${VXLAN6_OVERHEAD} bytes of IPv6 encapsulation: IPv6 needs at least 1280`);
  }
  const spec: VxlanSpec = { name, vni, port, local6: a.publicIPv6, underlay: ctx.extIface.index, mac: a.mac, learning: false };
  const table = new Vxlan6PeerTable(own);
  return startKernelNetwork({
    name: 'vxlan',
    log,
    signal: a.signal,
    mtu,
    table,
    peers: a.peers,
    deps: a.deps,
    everyMs: RECONCILE_MS,
    say: { set: 'IPv6 peer programmed', removed: 'IPv6 peer removed' },
    logInvalid: (l) => {
      const why = notV6Peer(l) ?? 'unusable';
      const fields = { lease: leaseName(l), key: formatLeaseKey(l), why };
      // A host without IPv6 in a dual-stack network: flannel reaches it over IPv4 only, and so do we.
      if (a.v4 && hasIpv4(l)) log.warn('vxlan lease without IPv6 (PublicIPv6, BackendV6Data): reached over IPv4 only', fields);
      else log.error('ignoring vxlan lease without IPv6 (PublicIPv6, BackendV6Data): unreachable in this IPv6-only network', fields);
    },
    async setup(nl, start) {
      const dev = await setupDevice(nl, start, a, new VxlanDevice(nl, spec, (index) => nl.ensureAddresses6(index, [{ ip: subnet6.ip, prefix: 128 }]), mtu));
      const recreated = (peers: number): void => log.warn('IPv6 device was missing or changed; re-created it, re-programming every IPv6 peer', { dev: name, peers });
      return vxlanDriver(dev, { fam: VXLAN6, calls: calls6(nl), plans: plans6, table, recreated }, ctx.extIface.index);
    },
    started: { dev: name, vni, port, vtepMAC: a.mac, address: `${formatIp6(subnet6.ip)}/128`, mtu, local: formatIp6(a.publicIPv6), underlay: ctx.extIface.name },
  });
}

/**
 * A family's start steps up to its device: stale devices removed, the VNI
 * freed (takeOverVni), then the device created or fixed (deleted again if
 * the start fails later).
 */
async function setupDevice(nl: Netlink, start: StartGuard, a: StartArgs, dev: VxlanDevice): Promise<VxlanDevice> {
  const { spec } = dev;
  start.check('removing stale devices');
  await removeForeignDevices(nl, a.keep, a.log);
  start.check(`freeing VNI ${spec.vni} port ${spec.port}${spec.local6 !== undefined ? ' (IPv6)' : ''}`);
  await takeOverVni(nl, spec, a.log);
  start.check(`creating ${spec.name}`);
  start.undo(`delete ${spec.name}`, async () => {
    const l = await nl.linkByName(spec.name);
    if (l !== null) await nl.deleteLink(l.index);
  });
  if (await dev.ensure()) a.log.info('device created', { dev: spec.name });
  return dev;
}

/**
 * One Network over the families' (either or both): a lease event goes to the
 * IPv4 side only when the lease has an IPv4 subnet (an IPv6-only lease's
 * 0.0.0.0/0 placeholder is never routed), and to the IPv6 side always (it
 * reports the leases it cannot use once); the MTU containers get is the
 * smaller one. Stops the IPv6 side first.
 */
function families(n4: Network | undefined, n6: Network | undefined): Network {
  const nets = [n4, n6].filter((n): n is Network => n !== undefined);
  return {
    mtu: Math.min(...nets.map((n) => n.mtu)),
    async apply(events: readonly LeaseEvent[]): Promise<void> {
      const v4 = events.filter((e) => hasIpv4(e.lease));
      const results = await Promise.allSettled([n4?.apply(v4), n6?.apply(events)]);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    },
    async stop(): Promise<void> {
      const errors: unknown[] = [];
      for (const n of [n6, n4]) await n?.stop().catch((e: unknown) => errors.push(e));
      if (errors.length > 0) throw errors[0];
    },
  };
}

/**
 * The kernel lets one device of a family hold a VNI on a UDP port. flanneld
 * leaves its `flannel.<VNI>` (IPv6: `flannel-v6.<VNI>`) behind when it stops,
 * so a host switched from flannel in place finds it holding ours: it is
 * replaced (its peers' routes go with it and are ours to program now). Any
 * other device in the way is an error that names it, since it may carry
 * someone else's traffic. A device of the other family is never in the way.
 */
export async function takeOverVni(nl: Pick<Netlink, 'listLinks' | 'deleteLink'>, spec: VxlanSpec, log: Logger): Promise<void> {
  const ipv6 = spec.local6 !== undefined || spec.group6 !== undefined;
  const flannels = ipv6 ? `flannel-v6.${spec.vni}` : `flannel.${spec.vni}`;
  for (const l of await nl.listLinks()) {
    if (l.name === spec.name || l.vxlan?.vni !== spec.vni || l.vxlan.port !== spec.port || (l.vxlan.ipv6 ?? false) !== ipv6) continue;
    if (l.name !== flannels) {
      throw new RudderError(
        'E_BACKEND',
        `vxlan: device ${l.name} already holds VNI ${spec.vni} on UDP port ${spec.port}${ipv6 ? ' (IPv6)' : ''}, which ${spec.name} needs: delete it (ip link del ${l.name}) or set another Backend.VNI or Backend.Port`,
      );
    }
    if (await nl.deleteLink(l.index)) log.warn("replaced flannel's VXLAN device (migration from flannel)", { dev: l.name, vni: spec.vni, port: spec.port, by: spec.name });
  }
}

/** One family's slice of the netlink facade, for runSteps and the driver. */
interface FamilyCalls<A extends number | bigint> {
  /** This family's Rudder routes of the main table, and the device's neighbors and FDB entries. */
  listRoutes(): Promise<VxlanKernelStateOf<A>['routes']>;
  listNeighbors(index: number): Promise<VxlanKernelStateOf<A>['neighbors']>;
  listFdb(index: number): Promise<VxlanKernelStateOf<A>['fdb']>;
  deleteRoutes(keys: ReadonlyArray<RouteKeyOf<A>>): Promise<BatchResult[]>;
  deleteFdbs(specs: ReadonlyArray<FdbSpecOf<A>>): Promise<BatchResult[]>;
  deleteNeighbors(keys: ReadonlyArray<NeighborKeyOf<A>>): Promise<BatchResult[]>;
  ensureNeighbors(specs: ReadonlyArray<NeighborSpecOf<A>>, opts: EnsureOptions): Promise<BatchResult[]>;
  ensureFdbs(specs: ReadonlyArray<FdbSpecOf<A>>, opts: EnsureOptions): Promise<BatchResult[]>;
  ensureRoutes(specs: ReadonlyArray<RouteSpecOf<A>>, opts: EnsureOptions): Promise<BatchResult[]>;
  /** A notification about this family's routes, neighbors or FDB entries, as the other family's kinds; else null. */
  change(ch: KernelChange): FamilyChange<A> | null;
}

type FamilyChange<A extends number | bigint> =
  | { readonly kind: 'route'; readonly route: RouteInfoOf<A> }
  | { readonly kind: 'neigh'; readonly index: number; readonly ip: A; readonly mac: string | undefined }
  | { readonly kind: 'fdb'; readonly index: number; readonly mac: string; readonly dst: A };

const RUDDER_ROUTES = { protocol: RTPROT_RUDDER, table: TABLE_MAIN };

const calls4 = (nl: Netlink): FamilyCalls<number> => ({
  listRoutes: () => nl.listRoutes(RUDDER_ROUTES),
  listNeighbors: (index) => nl.listNeighbors(index),
  listFdb: (index) => nl.listFdb(index),
  deleteRoutes: (keys) => nl.deleteRoutes(keys),
  deleteFdbs: (specs) => nl.deleteFdbs(specs),
  deleteNeighbors: (keys) => nl.deleteNeighbors(keys),
  ensureNeighbors: (specs, opts) => nl.ensureNeighbors(specs, opts),
  ensureFdbs: (specs, opts) => nl.ensureFdbs(specs, opts),
  ensureRoutes: (specs, opts) => nl.ensureRoutes(specs, opts),
  change: (ch) => (ch.kind === 'route' || ch.kind === 'neigh' || ch.kind === 'fdb' ? ch : null),
});

const calls6 = (nl: Netlink): FamilyCalls<bigint> => ({
  listRoutes: () => nl.listRoutes6(RUDDER_ROUTES),
  listNeighbors: (index) => nl.listNeighbors6(index),
  listFdb: (index) => nl.listFdb6(index),
  deleteRoutes: (keys) => nl.deleteRoutes6(keys),
  deleteFdbs: (specs) => nl.deleteFdbs6(specs),
  deleteNeighbors: (keys) => nl.deleteNeighbors6(keys),
  ensureNeighbors: (specs, opts) => nl.ensureNeighbors6(specs, opts),
  ensureFdbs: (specs, opts) => nl.ensureFdbs6(specs, opts),
  ensureRoutes: (specs, opts) => nl.ensureRoutes6(specs, opts),
  change(ch) {
    if (ch.kind === 'route6') return { kind: 'route', route: ch.route };
    if (ch.kind === 'neigh6') return { ...ch, kind: 'neigh' };
    if (ch.kind === 'fdb6') return { ...ch, kind: 'fdb' };
    return null;
  },
});

/**
 * Runs every step as a few batches, in the order the plans need: route,
 * FDB, neighbor deletions, then neighbor, FDB, route additions (pipelined,
 * no dump: every step comes from a plan made from a dump or from a lease
 * event against what this backend programmed, and replace requests are
 * idempotent). A route is not added when its peer's neighbor or FDB entry
 * failed (the kernel must never send into an unresolved next hop). Returns
 * one error per failed or skipped step; the others are done regardless.
 * Either family: `nl` holds its calls, `fam` its step describer and address keys.
 */
async function runSteps<A extends number | bigint>(
  nl: FamilyCalls<A>,
  fam: { describe(s: VxlanStepOf<A>): string; key(ip: A): A },
  dev: { readonly index: number; readonly name: string },
  steps: ReadonlyArray<VxlanStepOf<A>>,
): Promise<RudderError[]> {
  type Step = VxlanStepOf<A>;
  const index = dev.index;
  const blind = { dump: false };
  const errors: RudderError[] = [];
  const fail = (s: Step, e: unknown): void => {
    errors.push(new RudderError('E_BACKEND', `vxlan: ${fam.describe(s)} on ${dev.name} failed`, { cause: e }));
  };
  const of = <K extends Step['kind']>(kind: K): Array<Extract<Step, { kind: K }>> => steps.filter((s): s is Extract<Step, { kind: K }> => s.kind === kind);
  const check = <T extends Step>(list: readonly T[], results: readonly BatchResult[], onFail?: (s: T) => void): void => {
    results.forEach((r, i) => {
      if (!r.error) return;
      fail(list[i] as T, r.error);
      onFail?.(list[i] as T);
    });
  };
  const delRoutes = of('del-route');
  if (delRoutes.length) {
    check(delRoutes, await nl.deleteRoutes(delRoutes.map(({ dst, table, metric, oif, gateway }) => ({ dst, table, metric, ...(oif !== undefined ? { oif } : {}), ...(gateway !== undefined ? { gateway } : {}) }))));
  }
  const delFdb = of('del-fdb');
  if (delFdb.length) check(delFdb, await nl.deleteFdbs(delFdb.map((s) => ({ index, mac: s.mac, dst: s.dst }))));
  const delNeigh = of('del-neigh');
  if (delNeigh.length) check(delNeigh, await nl.deleteNeighbors(delNeigh.map((s) => ({ index, ip: s.ip }))));
  const badNeigh = new Set<A>();
  const macOf = new Map<A, string>();
  const addNeigh = of('add-neigh');
  for (const s of addNeigh) macOf.set(fam.key(s.ip), s.mac);
  if (addNeigh.length) check(addNeigh, await nl.ensureNeighbors(addNeigh.map((s) => ({ index, ip: s.ip, mac: s.mac })), blind), (s) => badNeigh.add(fam.key(s.ip)));
  const badMac = new Set<string>();
  const addFdb = of('add-fdb');
  if (addFdb.length) check(addFdb, await nl.ensureFdbs(addFdb.map((s) => ({ index, mac: s.mac, dst: s.dst })), blind), (s) => badMac.add(s.mac));
  const addRoute: Array<Extract<Step, { kind: 'add-route' }>> = [];
  for (const s of of('add-route')) {
    const mac = macOf.get(fam.key(s.via));
    if (badNeigh.has(fam.key(s.via)) || (mac !== undefined && badMac.has(mac))) fail(s, new Error('not added: its neighbor or FDB entry failed'));
    else addRoute.push(s);
  }
  if (addRoute.length) {
    check(addRoute, await nl.ensureRoutes(addRoute.map((s) => ({ dst: s.dst, oif: index, gateway: s.via, onlink: true, protocol: RTPROT_RUDDER, table: TABLE_MAIN })), blind));
  }
  return errors;
}

/** The VXLAN device (either family): created or fixed as a whole; its index changes when it is re-created. */
class VxlanDevice {
  index = 0;

  constructor(
    private readonly nl: Netlink,
    readonly spec: VxlanSpec,
    /** Ensures the device's address: the lease's network address /32 (IPv6: /128). */
    private readonly address: (index: number) => Promise<unknown>,
    private readonly mtu: number,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  /** Creates or fixes the device; true if it had to be (re)created. */
  async ensure(): Promise<boolean> {
    const link = await this.nl.ensureVxlan(this.spec);
    this.index = link.index;
    await this.address(link.index);
    await this.nl.ensureMtu(link.index, this.mtu);
    await this.nl.ensureLinkUp(link.index);
    return link.changed;
  }
}

/** One family's device driver: its netlink calls, plans and peer table; `index` is the device's current one. */
interface DriverFamily<A extends number | bigint, P extends PeerOf<A>> {
  readonly fam: VxlanFamily<A, P>;
  readonly calls: FamilyCalls<A>;
  readonly plans: VxlanPlans<A, P>;
  readonly table: FamilyPeerTable<A, P>;
  /** Logs that the device was missing or changed and had to be re-created. */
  recreated(peers: number): void;
}

function vxlanDriver<A extends number | bigint, P extends PeerOf<A>>(dev: VxlanDevice, d: DriverFamily<A, P>, underlay: number): KernelDriver<P, VxlanStepOf<A>> {
  const { fam, calls, plans, table } = d;
  /**
   * For a route, neighbor or FDB notification: whether it matches a peer of
   * the table; null when it is not this driver's to judge (the other
   * family's, another table or device, a neighbor the kernel keeps itself).
   */
  const ours = (ch: KernelChange, index: number): boolean | null => {
    const c = calls.change(ch);
    switch (c?.kind) {
      case 'route':
        return c.route.table !== TABLE_MAIN ? null : plans.isPeerRoute(c.route, table.bySubnet(c.route.dst), index);
      case 'neigh': {
        if (c.index !== index || fam.kernelNeighbor(c.ip)) return null;
        const p = table.byVtep(c.ip);
        return p !== undefined && (c.mac === undefined || c.mac === p.mac);
      }
      case 'fdb': {
        if (c.index !== index) return null;
        const p = table.byMac(c.mac);
        return p !== undefined && fam.key(fam.remote(p)) === fam.key(c.dst);
      }
      default:
        return null;
    }
  };
  return {
    async plan(peers) {
      if (await dev.ensure()) d.recreated(peers.length);
      const have = { routes: await calls.listRoutes(), neighbors: await calls.listNeighbors(dev.index), fdb: await calls.listFdb(dev.index) };
      return plans.planReconcile(peers, have, dev.index);
    },
    changeSteps: (ch) => plans.changeSteps(ch, dev.index, table),
    removeSteps: (peers) => plans.stopSteps(peers, dev.index),
    run: (steps) => runSteps(calls, { describe: plans.describeStep, key: (ip: A) => fam.key(ip) }, dev, steps),
    describeStep: (s) => plans.describeStep(s),
    isRemoval: (s) => s.kind.startsWith('del'),
    // The device's index is read per notification: a re-created device gets a new one.
    watches: (index) => index === dev.index || index === underlay,
    drifted(ch: KernelChange) {
      if (ch.kind === 'lost' || ch.kind === 'link') return true; // the device or the underlay (filtered)
      if (ch.kind === 'addr') return ch.index === dev.index;
      const o = ours(ch, dev.index);
      if (o === null) return false;
      return ch.op === 'del' ? o : !o;
    },
  };
}
