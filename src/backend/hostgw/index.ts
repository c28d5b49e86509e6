/**
 * The host-gw backend: no encapsulation at all. Every host is the gateway of
 * its own subnet, so a peer's subnet is routed straight to the peer's
 * PublicIP on the shared L2 segment: one route `subnet via PublicIP dev
 * <ext>` per peer (BackendType "host-gw"), main table, protocol
 * RTPROT_RUDDER, and with IPv6 on one route `ipv6Subnet via PublicIPv6 dev
 * <ext>` too (metric 1024, the kernel's IPv6 default). Overhead 0. The
 * lifecycle (start, apply, reconcile, stop) is the kernel-network runtime's
 * (../runtime.ts); this file is the driver.
 *
 * - Requirements: hosts share an L2 segment and talk without NAT. prepare()
 *   (before any lease is taken, so nothing unusable is published) and
 *   start() fail with E_BACKEND when this host's PublicIP (PublicIPv6) is
 *   not an address of the external interface; a peer whose PublicIP
 *   (PublicIPv6) is not on a prefix directly connected through it gets one
 *   error log naming its lease and no route of that family (retried on
 *   every reconcile, so an address added later fixes it).
 * - Families: IPv4 routes when the network has IPv4 (EnableIPv4), IPv6 ones
 *   when it has IPv6; a lease without IPv6 in a dual-stack network is
 *   reached over IPv4 only, logged once.
 * - Stale state: at start, `rudder0` and `rudder.<n>` VXLAN devices are
 *   deleted, and every Rudder route (either family) of the main table that
 *   is not a peer's.
 * - Reconcile: on a notification about the external link, its addresses or
 *   a Rudder route that is not as the table wants it.
 */
import { RudderError } from '../../errors';
import { ipv4Enabled } from '../../config';
import { formatCidr, formatIp } from '../../ip/ipv4';
import { formatCidr6, formatIp6 } from '../../ip/ipv6';
import { openNetlink as openRealNetlink, IPV6_DEFAULT_METRIC, RTPROT_RUDDER, TABLE_MAIN, type Addr6Spec, type AddrSpec, type KernelChange, type Netlink, type Route6Info } from '../../netlink';
import { removeForeignDevices } from '../common';
import { startKernelNetwork, type KernelDeps, type KernelDriver } from '../runtime';
import type { Backend, BackendContext, ExternalInterface } from '../types';
import {
  HostGwPeerTable,
  addStep,
  addStep6,
  delSteps,
  describePeer,
  describeStep,
  directlyConnected,
  directlyConnected6,
  hasV4,
  hasV6,
  hostGwPeer,
  planRoutes,
  planRoutes6,
  type Families,
  type HostGwPeer,
  type HostGwStep,
} from './routes';
import type { Logger } from '../../log';
import { leaseName } from '../../subnet/lease';

export { HostGwPeerTable, directlyConnected, directlyConnected6, hostGwPeer, planRoutes, planRoutes6, type Families, type HostGwPeer, type HostGwStep } from './routes';

export const HOSTGW_OVERHEAD = 0;
export const RECONCILE_MS = 3_000;

/** The external interface's addresses of both families. */
interface ExtAddrs {
  readonly v4: AddrSpec[];
  readonly v6: Addr6Spec[];
}

async function addresses(nl: Netlink, ext: ExternalInterface, fam: Families): Promise<ExtAddrs> {
  const v4 = (await nl.listAddresses(ext.index)).map(({ ip, prefix }) => ({ ip, prefix }));
  const v6 = fam.ipv6 ? (await nl.listAddresses6(ext.index)).map(({ ip, prefix }) => ({ ip, prefix })) : [];
  return { v4, v6 };
}

/** host-gw cannot work behind NAT: the PublicIP (PublicIPv6) must be an address of the external interface. */
function checkPublicIP(ext: ExternalInterface, addrs: ExtAddrs, fam: Families): void {
  if (fam.ipv4 && !addrs.v4.some((a) => a.ip >>> 0 === ext.publicIP >>> 0)) {
    throw new RudderError(
      'E_BACKEND',
      `host-gw: public IP ${formatIp(ext.publicIP)} is not an address of ${ext.name} (${addrs.v4.map((a) => `${formatIp(a.ip)}/${a.prefix}`).join(', ') || 'no IPv4 address'}): ` +
        `host-gw routes peers' subnets via their public IPs, so hosts must share an L2 segment without NAT; drop -public-ip or use the vxlan or udp backend`,
    );
  }
  const pub6 = ext.publicIPv6;
  if (fam.ipv6 && (pub6 === undefined || !addrs.v6.some((a) => a.ip === pub6))) {
    throw new RudderError(
      'E_BACKEND',
      `host-gw: public IPv6 ${pub6 === undefined ? '(none)' : formatIp6(pub6)} is not an address of ${ext.name} (${addrs.v6.map((a) => `${formatIp6(a.ip)}/${a.prefix}`).join(', ') || 'no global IPv6 address'}): ` +
        `host-gw routes peers' IPv6 subnets via their public IPv6 addresses, so hosts must share an L2 segment without NAT; drop -public-ipv6 or use the vxlan or udp backend`,
    );
  }
}

/** The families the network config routes. */
export function familiesOf(ctx: BackendContext): Families {
  return { ipv4: ipv4Enabled(ctx.config), ipv6: ctx.config.ipv6 !== undefined };
}

export function createHostGwBackend(ctx: BackendContext, deps: KernelDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'host-gw' });
  const ext = ctx.extIface;
  const fam = familiesOf(ctx);
  return {
    type: 'host-gw',
    overhead: HOSTGW_OVERHEAD,
    carriesIPv6: true,

    /** Checks the public addresses before a lease is taken, so a host that cannot work publishes nothing. */
    async prepare(): Promise<Record<string, unknown>> {
      const nl = (deps.openNetlink ?? openRealNetlink)();
      try {
        checkPublicIP(ext, await addresses(nl, ext, fam), fam);
      } finally {
        nl.close();
      }
      return {};
    },

    start: (own, signal, peers = []) => {
      const table = new HostGwPeerTable(own, fam);
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
        logInvalid: (l) => {
          const why = hostGwPeer(l, '', fam);
          log.warn('not routing a host-gw lease this network cannot use', { lease: leaseName(l), why: typeof why === 'string' ? why : 'unusable' });
        },
        async setup(nl, start) {
          start.check('checking the public IP');
          const addrs = await addresses(nl, ext, fam);
          checkPublicIP(ext, addrs, fam);
          start.check('removing stale devices');
          await removeForeignDevices(nl, null, log);
          return hostGwDriver(nl, ext, fam, table, addrs, log);
        },
        started: { dev: ext.name, ...(fam.ipv4 ? { publicIP: formatIp(ext.publicIP) } : {}), ...(fam.ipv6 && ext.publicIPv6 !== undefined ? { publicIPv6: formatIp6(ext.publicIPv6) } : {}), mtu: ext.mtu - HOSTGW_OVERHEAD },
      });
    },
  };
}

/** The Rudder IPv6 routes of the main table; in a network without IPv6 a host whose kernel has no IPv6 has none. */
async function rudderRoutes6(nl: Netlink, fam: Families): Promise<Route6Info[]> {
  try {
    return await nl.listRoutes6({ protocol: RTPROT_RUDDER, table: TABLE_MAIN });
  } catch (e) {
    if (fam.ipv6) throw e;
    return [];
  }
}

function hostGwDriver(nl: Netlink, ext: ExternalInterface, fam: Families, table: HostGwPeerTable, initialAddrs: ExtAddrs, log: Logger): KernelDriver<HostGwPeer, HostGwStep> {
  let addrs = initialAddrs;
  /** Peers reported as not directly reachable (key/family → next hop), so each is logged once. */
  const unreachable = new Map<string, number | bigint>();
  /** Peers logged as reached over IPv4 only (no IPv6 in their lease, in a dual-stack network). */
  const v4only = new Set<string>();

  const usable = (p: HostGwPeer, family: 'v4' | 'v6', nextHop: number | bigint, connected: boolean, what: string): boolean => {
    const k = `${family}|${p.key}`;
    if (connected) {
      if (unreachable.delete(k)) log.info('peer is directly reachable now', { peer: describePeer(p) });
      return true;
    }
    if (unreachable.get(k) !== nextHop) {
      unreachable.set(k, nextHop);
      const hop = typeof nextHop === 'number' ? formatIp(nextHop) : formatIp6(nextHop);
      const conn = family === 'v4' ? addrs.v4.map((a) => `${formatIp(a.ip)}/${a.prefix}`) : addrs.v6.map((a) => `${formatIp6(a.ip)}/${a.prefix}`);
      log.error(`host-gw: not routing lease ${p.key}: its ${what} ${hop} is not on a subnet directly connected to ${ext.name}; host-gw needs every host on one L2 segment (use vxlan otherwise)`, {
        subnet: family === 'v4' ? formatCidr(p.subnet) : formatCidr6(p.ipv6Subnet ?? { ip: 0n, prefix: 0 }),
        [family === 'v4' ? 'publicIP' : 'publicIPv6']: hop,
        key: p.key,
        connected: conn.join(','),
      });
    }
    return false;
  };

  /** The peers that can get an IPv4 route, and those that can get an IPv6 route; logs the others once. */
  const reachable = (peers: readonly HostGwPeer[]): { v4: HostGwPeer[]; v6: HostGwPeer[] } => {
    const v4: HostGwPeer[] = [];
    const v6: HostGwPeer[] = [];
    for (const p of peers) {
      if (hasV4(p) && usable(p, 'v4', p.publicIP, directlyConnected(addrs.v4, p.publicIP), 'PublicIP')) v4.push(p);
      if (hasV6(p) && usable(p, 'v6', p.publicIPv6, directlyConnected6(addrs.v6, p.publicIPv6), 'PublicIPv6')) v6.push(p);
      if (fam.ipv6 && fam.ipv4 && !hasV6(p) && !v4only.has(p.key)) {
        v4only.add(p.key);
        log.info('peer lease has no IPv6 subnet or PublicIPv6: reaching it over IPv4 only', { key: p.key, subnet: formatCidr(p.subnet) });
      }
    }
    return { v4, v6 };
  };

  const forget = (p: HostGwPeer): void => {
    unreachable.delete(`v4|${p.key}`);
    unreachable.delete(`v6|${p.key}`);
    v4only.delete(p.key);
  };

  return {
    async plan(peers) {
      addrs = await addresses(nl, ext, fam);
      const ok = reachable(peers);
      return [
        ...planRoutes(ok.v4, await nl.listRoutes({ protocol: RTPROT_RUDDER, table: TABLE_MAIN }), ext.index),
        ...planRoutes6(ok.v6, await rudderRoutes6(nl, fam), ext.index),
      ];
    },
    changeSteps(ch) {
      for (const p of ch.removed) forget(p);
      const ok = reachable(ch.added);
      return [...ch.removed.flatMap((p) => delSteps(p, ext.index)), ...ok.v4.map(addStep), ...ok.v6.filter(hasV6).map(addStep6)];
    },
    removeSteps: (peers) => peers.flatMap((p) => delSteps(p, ext.index)),
    /** All deletions as one batch per family, then all additions likewise, without reading the table (replace requests). */
    async run(steps) {
      const of = <K extends HostGwStep['kind']>(kind: K): Array<Extract<HostGwStep, { kind: K }>> => steps.filter((s): s is Extract<HostGwStep, { kind: K }> => s.kind === kind);
      const dels = of('del-route');
      const dels6 = of('del-route6');
      const adds = of('add-route');
      const adds6 = of('add-route6');
      const dr = await nl.deleteRoutes(dels.map(({ dst, table: t, metric, oif, gateway }) => ({ dst, table: t, metric, ...(oif !== undefined ? { oif } : {}), ...(gateway !== undefined ? { gateway } : {}) })));
      const dr6 =
        dels6.length === 0 ? [] : await nl.deleteRoutes6(dels6.map(({ dst, table: t, metric, oif, gateway }) => ({ dst, table: t, metric, ...(oif !== undefined ? { oif } : {}), ...(gateway !== undefined ? { gateway } : {}) })));
      const ar = await nl.ensureRoutes(adds.map((s) => ({ dst: s.dst, oif: ext.index, gateway: s.via, protocol: RTPROT_RUDDER, table: TABLE_MAIN })), { dump: false });
      const ar6 =
        adds6.length === 0
          ? []
          : await nl.ensureRoutes6(adds6.map((s) => ({ dst: s.dst, oif: ext.index, gateway: s.via, protocol: RTPROT_RUDDER, table: TABLE_MAIN, metric: IPV6_DEFAULT_METRIC })), { dump: false });
      const fail = (s: HostGwStep, e: unknown): RudderError => new RudderError('E_BACKEND', `host-gw: ${describeStep(s)} dev ${ext.name} failed`, { cause: e });
      const errs = <S extends HostGwStep>(list: readonly S[], rs: ReadonlyArray<{ error?: Error }>): RudderError[] => list.flatMap((s, i) => (rs[i]?.error ? [fail(s, rs[i]?.error)] : []));
      return [...errs(dels, dr), ...errs(dels6, dr6), ...errs(adds, ar), ...errs(adds6, ar6)];
    },
    describeStep,
    isRemoval: (s) => s.kind === 'del-route' || s.kind === 'del-route6',
    watches: (index) => index === ext.index,
    drifted(ch: KernelChange) {
      if (ch.kind === 'lost' || ch.kind === 'link' || ch.kind === 'addr') return true; // link/addr: ext only (filtered)
      if (ch.kind === 'route6') {
        const r = ch.route;
        if (r.table !== TABLE_MAIN) return false;
        const p = table.byIpv6Subnet(r.dst);
        const ours = p !== undefined && r.oif === ext.index && r.gateway === p.publicIPv6 && r.metric === IPV6_DEFAULT_METRIC;
        return ch.op === 'del' ? ours : !ours;
      }
      if (ch.kind !== 'route' || ch.route.table !== TABLE_MAIN) return false;
      const r = ch.route;
      const p = table.byIpv4Subnet(r.dst);
      const ours = p !== undefined && r.oif === ext.index && r.gateway === p.publicIP >>> 0 && r.metric === 0;
      // A route we want went away, or a Rudder route we did not make appeared (our own writes match).
      return ch.op === 'del' ? ours : !ours;
    },
  };
}
