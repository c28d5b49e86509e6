/**
 * The host-gw backend: no encapsulation at all. Every host is the gateway of
 * its own subnet, so a peer's subnet is routed straight to the peer's
 * PublicIP on the shared L2 segment: one route `subnet via PublicIP dev
 * <ext>` per peer (BackendType "host-gw"), main table, protocol
 * RTPROT_RUDDER. Overhead 0. The lifecycle (start, apply, reconcile, stop)
 * is the kernel-network runtime's (../runtime.ts); this file is the driver.
 *
 * - Requirements: hosts share an L2 segment and talk without NAT. prepare()
 *   (before any lease is taken, so nothing unusable is published) and
 *   start() fail with E_BACKEND when this host's PublicIP is not an address
 *   of the external interface; a peer whose PublicIP is not on a subnet
 *   directly connected through it gets one error log naming its lease and
 *   no route (retried on every reconcile, so an address added later fixes it).
 * - Stale state: at start, `rudder0` and `rudder.<n>` VXLAN devices are
 *   deleted, and every Rudder route of the main table that is not a peer's.
 * - Reconcile: on a notification about the external link, its addresses or
 *   a Rudder route that is not as the table wants it.
 */
import { RudderError } from '../../errors';
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import { openNetlink as openRealNetlink, RTPROT_RUDDER, TABLE_MAIN, type AddrSpec, type KernelChange, type Netlink } from '../../netlink';
import { removeForeignDevices } from '../common';
import { startKernelNetwork, type KernelDeps, type KernelDriver } from '../runtime';
import type { Backend, BackendContext, ExternalInterface } from '../types';
import { HostGwPeerTable, addStep, delStep, describePeer, describeStep, directlyConnected, planRoutes, type HostGwPeer, type HostGwStep } from './routes';
import type { Logger } from '../../log';

export { HostGwPeerTable, directlyConnected, planRoutes, type HostGwPeer, type HostGwStep } from './routes';

export const HOSTGW_OVERHEAD = 0;
export const RECONCILE_MS = 3_000;

async function addresses(nl: Netlink, ext: ExternalInterface): Promise<AddrSpec[]> {
  return (await nl.listAddresses(ext.index)).map(({ ip, prefix }) => ({ ip, prefix }));
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

export function createHostGwBackend(ctx: BackendContext, deps: KernelDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'host-gw' });
  const ext = ctx.extIface;
  return {
    type: 'host-gw',
    overhead: HOSTGW_OVERHEAD,

    /** Checks the PublicIP before a lease is taken, so a host that cannot work publishes nothing. */
    async prepare(): Promise<Record<string, unknown>> {
      const nl = (deps.openNetlink ?? openRealNetlink)();
      try {
        checkPublicIP(ext, await addresses(nl, ext));
      } finally {
        nl.close();
      }
      return {};
    },

    start: (own, signal, peers = []) => {
      const table = new HostGwPeerTable(own.subnet);
      return startKernelNetwork({
        name: 'host-gw',
        log,
        signal,
        mtu: ext.mtu - HOSTGW_OVERHEAD,
        table,
        peers,
        deps,
        everyMs: RECONCILE_MS,
        say: { set: 'route set', removed: 'route removed' },
        async setup(nl, start) {
          start.check('checking the public IP');
          const addrs = await addresses(nl, ext);
          checkPublicIP(ext, addrs);
          start.check('removing stale devices');
          await removeForeignDevices(nl, null, log);
          return hostGwDriver(nl, ext, table, addrs, log);
        },
        started: { dev: ext.name, publicIP: formatIp(ext.publicIP), mtu: ext.mtu - HOSTGW_OVERHEAD },
      });
    },
  };
}

function hostGwDriver(nl: Netlink, ext: ExternalInterface, table: HostGwPeerTable, initialAddrs: AddrSpec[], log: Logger): KernelDriver<HostGwPeer, HostGwStep> {
  let addrs = initialAddrs;
  /** Peers reported as not directly reachable (key → PublicIP), so each is logged once. */
  const unreachable = new Map<string, number>();

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

  return {
    async plan(peers) {
      addrs = await addresses(nl, ext);
      return planRoutes(reachable(peers), await nl.listRoutes({ protocol: RTPROT_RUDDER, table: TABLE_MAIN }), ext.index);
    },
    changeSteps(ch) {
      for (const p of ch.removed) unreachable.delete(p.key);
      return [...ch.removed.map((p) => delStep(p, ext.index)), ...reachable(ch.added).map(addStep)];
    },
    removeSteps: (peers) => peers.map((p) => delStep(p, ext.index)),
    /** All deletions as one batch, then all additions as one, without reading the table (replace requests). */
    async run(steps) {
      const dels = steps.filter((s): s is Extract<HostGwStep, { kind: 'del-route' }> => s.kind === 'del-route');
      const adds = steps.filter((s): s is Extract<HostGwStep, { kind: 'add-route' }> => s.kind === 'add-route');
      const dr = await nl.deleteRoutes(dels.map(({ dst, table: t, metric, oif, gateway }) => ({ dst, table: t, metric, ...(oif !== undefined ? { oif } : {}), ...(gateway !== undefined ? { gateway } : {}) })));
      const ar = await nl.ensureRoutes(adds.map((s) => ({ dst: s.dst, oif: ext.index, gateway: s.via, protocol: RTPROT_RUDDER, table: TABLE_MAIN })), { dump: false });
      const fail = (s: HostGwStep, e: unknown): RudderError => new RudderError('E_BACKEND', `host-gw: ${describeStep(s)} dev ${ext.name} failed`, { cause: e });
      return [...dels.flatMap((s, i) => (dr[i]?.error ? [fail(s, dr[i]?.error)] : [])), ...adds.flatMap((s, i) => (ar[i]?.error ? [fail(s, ar[i]?.error)] : []))];
    },
    describeStep,
    isRemoval: (s) => s.kind === 'del-route',
    watches: (index) => index === ext.index,
    drifted(ch: KernelChange) {
      if (ch.kind === 'lost' || ch.kind === 'link' || ch.kind === 'addr') return true; // link/addr: ext only (filtered)
      if (ch.kind !== 'route' || ch.route.table !== TABLE_MAIN) return false;
      const r = ch.route;
      const p = table.get(cidrToKey(r.dst));
      const ours = p !== undefined && r.oif === ext.index && r.gateway === p.publicIP >>> 0 && r.metric === 0;
      // A route we want went away, or a Rudder route we did not make appeared (our own writes match).
      return ch.op === 'del' ? ours : !ours;
    },
  };
}
