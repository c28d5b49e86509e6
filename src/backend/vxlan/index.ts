/**
 * The vxlan backend: the kernel's VXLAN device carries the overlay; Rudder
 * only programs it over rtnetlink (no packet ever touches JavaScript). The
 * lifecycle (start, apply, reconcile, stop) is the kernel-network runtime's
 * (../runtime.ts); this file is the device and the driver, peers.ts the
 * pure planner.
 *
 * - Device: `rudder.<VNI>` (Backend.VNI, default 1), UDP port Backend.Port
 *   (default 8472), learning off, local = the external interface's address,
 *   bound to that interface; MTU = underlay MTU − 50 (outer IPv4 20 + UDP 8 +
 *   VXLAN 8 + inner Ethernet 14); address = the lease's network address /32
 *   (10.0.5.0/32; .1 stays free for the container bridge); up. ensureVxlan
 *   replaces a device of that name with other parameters.
 * - VTEP MAC: derived from this host's PublicIP and the VNI (peers.ts,
 *   `vtepMac`), so it is the same on every start without a state file;
 *   peers' FDB and neighbor entries stay valid across our restarts.
 *   prepare() only computes it; the device is created in start(), so a
 *   daemon stopped while acquiring its lease leaves nothing behind.
 * - Peers: leases with BackendType "vxlan" and a valid VtepMAC (others are
 *   logged once). Per peer: neighbor, FDB, route (onlink), in that order;
 *   removal in reverse.
 * - Stale state: at start, `rudder0` and other `rudder.<n>` VXLAN devices
 *   are deleted, and every Rudder route and neighbor/FDB entry on our device
 *   that is not a peer's.
 * - Reconcile: the device is ensured first (re-created if deleted: every
 *   peer re-programmed), then routes/neighbors/FDB compared with the table.
 * - stop() unprograms every peer, then deletes the device.
 */
import { RudderError } from '../../errors';
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import type { Logger } from '../../log';
import type { Lease } from '../../subnet/lease';
import { RTPROT_RUDDER, TABLE_MAIN, type BatchResult, type KernelChange, type Netlink, type VxlanSpec } from '../../netlink';
import type { Backend, BackendContext } from '../types';
import { removeForeignDevices } from '../common';
import { startKernelNetwork, type KernelDeps, type KernelDriver } from '../runtime';
import { VxlanPeerTable, changeSteps, describeStep, peerVtepIp, planReconcile, stopSteps, vtepMac, type VxlanPeer, type VxlanStep } from './peers';

export { VxlanPeerTable, vtepMac, leaseMac, planReconcile, programSteps, unprogramSteps, changeSteps, peerUse, type PeerUse, type VxlanPeer, type VxlanStep } from './peers';

export const VXLAN_OVERHEAD = 50;
import { DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI as DEFAULT_VNI } from '../../config';
export { DEFAULT_VNI, DEFAULT_VXLAN_PORT };
export const RECONCILE_MS = 5_000;

export const deviceName = (vni: number): string => `rudder.${vni}`;

export function createVxlanBackend(ctx: BackendContext, deps: KernelDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'vxlan' });
  const vni = ctx.config.backend.VNI ?? DEFAULT_VNI;
  const port = ctx.config.backend.Port ?? DEFAULT_VXLAN_PORT;
  const name = deviceName(vni);
  const mtu = ctx.extIface.mtu - VXLAN_OVERHEAD;
  const mac = vtepMac(ctx.extIface.publicIP, vni);
  const spec: VxlanSpec = { name, vni, port, local: ctx.extIface.address, underlay: ctx.extIface.index, mac, learning: false };

  return {
    type: 'vxlan',
    overhead: VXLAN_OVERHEAD,

    async prepare(): Promise<Record<string, unknown>> {
      return { VtepMAC: mac };
    },

    async start(own: Lease, signal: AbortSignal, peers: readonly Lease[] = []) {
      if (mtu < 68) {
        throw new RudderError('E_BACKEND', `vxlan: underlay ${ctx.extIface.name} MTU ${ctx.extIface.mtu} leaves ${mtu} after ${VXLAN_OVERHEAD} bytes of encapsulation: expected at least 68`);
      }
      const table = new VxlanPeerTable(own.subnet);
      return startKernelNetwork({
        name: 'vxlan',
        log,
        signal,
        mtu,
        table,
        peers,
        deps,
        everyMs: RECONCILE_MS,
        say: { set: 'peer programmed', removed: 'peer removed' },
        logInvalid: (l) =>
          log.error('ignoring vxlan lease without a valid VtepMAC', { subnet: formatCidr(l.subnet), key: cidrToKey(l.subnet), publicIP: formatIp(l.publicIP), VtepMAC: l.backendData['VtepMAC'] }),
        async setup(nl, start) {
          start.check('removing stale devices');
          await removeForeignDevices(nl, name, log);
          start.check(`freeing VNI ${vni} port ${port}`);
          await takeOverVni(nl, spec, log);
          start.check(`creating ${name}`);
          start.undo(`delete ${name}`, async () => {
            const l = await nl.linkByName(name);
            if (l !== null) await nl.deleteLink(l.index);
          });
          const dev = new VxlanDevice(nl, spec, own, mtu);
          if (await dev.ensure()) log.info('device created', { dev: name });
          return vxlanDriver(nl, dev, table, ctx.extIface.index, log);
        },
        started: { dev: name, vni, port, vtepMAC: mac, address: `${formatIp(own.subnet.ip)}/32`, mtu, local: formatIp(ctx.extIface.address), underlay: ctx.extIface.name },
      });
    },
  };
}

/**
 * The kernel lets one device hold a VNI on a UDP port. flanneld leaves its
 * `flannel.<VNI>` behind when it stops, so a host switched from flannel in
 * place finds it holding ours: it is replaced (its peers' routes go with it
 * and are ours to program now). Any other device in the way is an error that
 * names it, since it may carry someone else's traffic.
 */
export async function takeOverVni(nl: Pick<Netlink, 'listLinks' | 'deleteLink'>, spec: VxlanSpec, log: Logger): Promise<void> {
  for (const l of await nl.listLinks()) {
    if (l.name === spec.name || l.vxlan?.vni !== spec.vni || l.vxlan.port !== spec.port) continue;
    if (l.name !== `flannel.${spec.vni}`) {
      throw new RudderError(
        'E_BACKEND',
        `vxlan: device ${l.name} already holds VNI ${spec.vni} on UDP port ${spec.port}, which ${spec.name} needs: delete it (ip link del ${l.name}) or set another Backend.VNI or Backend.Port`,
      );
    }
    if (await nl.deleteLink(l.index)) log.warn("replaced flannel's VXLAN device (migration from flannel)", { dev: l.name, vni: spec.vni, port: spec.port, by: spec.name });
  }
}

/** The VXLAN device: created or fixed as a whole; its index changes when it is re-created. */
class VxlanDevice {
  index = 0;

  constructor(
    private readonly nl: Netlink,
    private readonly spec: VxlanSpec,
    private readonly own: Lease,
    private readonly mtu: number,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  /** Creates or fixes the device; true if it had to be (re)created. */
  async ensure(): Promise<boolean> {
    const link = await this.nl.ensureVxlan(this.spec);
    this.index = link.index;
    await this.nl.ensureAddresses(link.index, [{ ip: this.own.subnet.ip, prefix: 32 }]);
    await this.nl.ensureMtu(link.index, this.mtu);
    await this.nl.ensureLinkUp(link.index);
    return link.changed;
  }
}

function vxlanDriver(nl: Netlink, dev: VxlanDevice, table: VxlanPeerTable, underlay: number, log: Logger): KernelDriver<VxlanPeer, VxlanStep> {
  return {
    async plan(peers) {
      if (await dev.ensure()) log.warn('device was missing or changed; re-created it, re-programming every peer', { peers: peers.length });
      const have = {
        routes: await nl.listRoutes({ protocol: RTPROT_RUDDER, table: TABLE_MAIN }),
        neighbors: await nl.listNeighbors(dev.index),
        fdb: await nl.listFdb(dev.index),
      };
      return planReconcile(peers, have, dev.index);
    },
    changeSteps: (ch) => changeSteps(ch, dev.index, table),
    removeSteps: (peers) => stopSteps(peers, dev.index),
    run: (steps) => runSteps(nl, dev, steps),
    describeStep,
    isRemoval: (s) => s.kind.startsWith('del'),
    // The device's index is read per notification: a re-created device gets a new one.
    watches: (index) => index === dev.index || index === underlay,
    drifted(ch: KernelChange) {
      switch (ch.kind) {
        case 'lost':
        case 'link': // the device or the underlay (filtered)
          return true;
        case 'addr':
          return ch.index === dev.index;
        case 'route6': // this backend makes no IPv6 routes
          return false;
        case 'route': {
          const r = ch.route;
          if (r.table !== TABLE_MAIN) return false;
          const p = table.get(cidrToKey(r.dst));
          const ours = p !== undefined && r.oif === dev.index && r.gateway === peerVtepIp(p) >>> 0 && r.onlink && r.metric === 0;
          return ch.op === 'del' ? ours : !ours;
        }
        case 'neigh': {
          if (ch.index !== dev.index) return false;
          const p = table.byVtep(ch.ip);
          const ours = p !== undefined && (ch.mac === undefined || ch.mac === p.mac);
          return ch.op === 'del' ? ours : !ours;
        }
        case 'fdb': {
          if (ch.index !== dev.index) return false;
          const ours = table.byMac(ch.mac)?.publicIP === ch.dst >>> 0;
          return ch.op === 'del' ? ours : !ours;
        }
      }
    },
  };
}

/**
 * Runs every step as a few batches, in the order the plans need: route,
 * FDB, neighbor deletions, then neighbor, FDB, route additions (pipelined,
 * no dump: every step comes from a plan made from a dump or from a lease
 * event against what this backend programmed, and replace requests are
 * idempotent). A route is not added when its peer's neighbor or FDB entry
 * failed (the kernel must never send into an unresolved next hop). Returns
 * one error per failed or skipped step; the others are done regardless.
 */
async function runSteps(nl: Netlink, dev: VxlanDevice, steps: readonly VxlanStep[]): Promise<RudderError[]> {
  const index = dev.index;
  const blind = { dump: false };
  const errors: RudderError[] = [];
  const fail = (s: VxlanStep, e: unknown): void => {
    errors.push(new RudderError('E_BACKEND', `vxlan: ${describeStep(s)} on ${dev.name} failed`, { cause: e }));
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
    check(delRoutes, await nl.deleteRoutes(delRoutes.map(({ dst, table, metric, oif, gateway }) => ({ dst, table, metric, ...(oif !== undefined ? { oif } : {}), ...(gateway !== undefined ? { gateway } : {}) }))));
  }
  const delFdb = of('del-fdb');
  if (delFdb.length) check(delFdb, await nl.deleteFdbs(delFdb.map((s) => ({ index, mac: s.mac, dst: s.dst }))));
  const delNeigh = of('del-neigh');
  if (delNeigh.length) check(delNeigh, await nl.deleteNeighbors(delNeigh.map((s) => ({ index, ip: s.ip }))));
  const badNeigh = new Set<number>();
  const macOf = new Map<number, string>();
  const addNeigh = of('add-neigh');
  for (const s of addNeigh) macOf.set(s.ip >>> 0, s.mac);
  if (addNeigh.length) check(addNeigh, await nl.ensureNeighbors(addNeigh.map((s) => ({ index, ip: s.ip, mac: s.mac })), blind), (s) => badNeigh.add(s.ip >>> 0));
  const badMac = new Set<string>();
  const addFdb = of('add-fdb');
  if (addFdb.length) check(addFdb, await nl.ensureFdbs(addFdb.map((s) => ({ index, mac: s.mac, dst: s.dst })), blind), (s) => badMac.add(s.mac));
  const addRoute: Array<Extract<VxlanStep, { kind: 'add-route' }>> = [];
  for (const s of of('add-route')) {
    const mac = macOf.get(s.via >>> 0);
    if (badNeigh.has(s.via >>> 0) || (mac !== undefined && badMac.has(mac))) fail(s, new Error('not added: its neighbor or FDB entry failed'));
    else addRoute.push(s);
  }
  if (addRoute.length) {
    check(addRoute, await nl.ensureRoutes(addRoute.map((s) => ({ dst: s.dst, oif: index, gateway: s.via, onlink: true, protocol: RTPROT_RUDDER, table: TABLE_MAIN })), blind));
  }
  return errors;
}
