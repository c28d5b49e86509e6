/**
 * The kernel side of a backend whose data plane owns a TUN (udp, wireguard):
 * the device's address, MTU and state, the Network routed to it, and the
 * fail-closed `unreachable` route beside it (docs/architecture.md, "udp").
 * Every step is an ensure, registered on the caller's StartGuard for undo.
 * Also the one choice of underlay family these backends share (underlayOf).
 */
import { RudderError } from '../errors';
import { type Cidr, formatCidr, formatIp } from '../ip/ipv4';
import { type Cidr6, cidr6Equals, formatCidr6, formatIp6 } from '../ip/ipv6';
import type { Logger } from '../log';
import { only, RTN_UNICAST, RTN_UNREACHABLE, RTPROT_RUDDER, TABLE_MAIN, type Netlink, type RouteKey } from '../netlink';
import type { UnderlayFamily } from '../dataplane/types';
import type { StartGuard } from './common';
import type { ExternalInterface } from './types';

/**
 * The family of this host's data-plane socket, one per host: IPv4 when it
 * has an IPv4 PublicIP (-public-ip, or the interface's address), else IPv6
 * (its PublicIPv6: -public-ipv6 or the interface's global address). Both
 * inner families ride on it. Throws E_BACKEND when the host has neither.
 */
export function underlayOf(backend: string, ext: ExternalInterface): UnderlayFamily {
  if (ext.publicIP !== 0) return 'ipv4';
  if (ext.publicIPv6 !== undefined && ext.publicIPv6 !== 0n) return 'ipv6';
  throw new RudderError('E_BACKEND', `${backend}: interface ${ext.name} gives this host no IPv4 PublicIP and no PublicIPv6: expected an IPv4 address (or -public-ip), or a global IPv6 address (or -public-ipv6) with EnableIPv6`);
}

/** An endpoint as text: 198.18.0.2:8285, or [2001:2::2]:8285. */
export function formatEndpoint(ip: number, ip6: bigint | undefined, port: number): string {
  return ip6 !== undefined ? `[${formatIp6(ip6)}]:${port}` : `${formatIp(ip)}:${port}`;
}

/**
 * Metric of the Network's `unreachable` fallback route: the highest there is,
 * so it never shadows the TUN's route (metric 0) or a route an operator put
 * there; it only answers when the TUN's route is gone.
 */
export const FALLBACK_METRIC = 0xffffffff;

export interface TunNetwork {
  /** Backend name, for messages. */
  readonly backend: string;
  /** The TUN the data plane created. */
  readonly dev: string;
  /** This host's lease subnet: its network address goes on the device as a /32. */
  readonly own: Cidr;
  readonly mtu: number;
  /** The whole overlay Network, routed to the device; 0.0.0.0/0 (IPv6-only): no IPv4 at all. */
  readonly network: Cidr;
  /** IPv6 (dual-stack or IPv6-only): this host's IPv6 subnet and the IPv6Network, as the IPv4 pair. */
  readonly own6?: Cidr6;
  readonly network6?: Cidr6;
}

/**
 * Configures the TUN, removes Rudder routes that are not this backend's
 * (left by a crashed run or another backend; being more specific they would
 * shadow the Network route), then routes the Network to the TUN, the
 * fallback first so the Network is never routed out the default route.
 */
export async function ensureTunNetwork(nl: Netlink, start: StartGuard, log: Logger, t: TunNetwork): Promise<void> {
  const { dev, network } = t;
  const v4 = network.prefix !== 0;
  start.check(`configuring ${dev}`);
  const link = await nl.linkByName(dev);
  if (link === null) throw new RudderError('E_BACKEND', `${t.backend}: data plane started but device ${dev} does not exist`);
  await nl.ensureAddresses(link.index, v4 ? [{ ip: t.own.ip, prefix: 32 }] : []);
  // The TUN's IPv6 address: the subnet's network address as a /128, as IPv4's /32 (the ICMPv6 errors' source).
  // An IPv4-only network touches no IPv6 state (the host may have IPv6 off altogether).
  if (t.own6 !== undefined) await nl.ensureAddresses6(link.index, [{ ip: t.own6.ip, prefix: 128 }]);
  start.check(`setting ${dev} MTU`);
  await nl.ensureMtu(link.index, t.mtu);
  start.check(`setting ${dev} up`);
  await nl.ensureLinkUp(link.index);

  start.check('removing stale routes');
  const stale = (await nl.listRoutes({ protocol: RTPROT_RUDDER, table: TABLE_MAIN })).filter((r) => {
    const toNetwork = r.dst.ip === network.ip && r.dst.prefix === network.prefix;
    const ours = toNetwork && ((r.type === RTN_UNICAST && r.oif === link.index && r.gateway === undefined) || (r.type === RTN_UNREACHABLE && r.metric === FALLBACK_METRIC));
    return !ours;
  });
  const removed = await nl.deleteRoutes(stale.map((r) => ({ dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}) })));
  stale.forEach((r, i) => {
    if (removed[i]?.error === undefined) log.info('removed stale route', { dst: formatCidr(r.dst), oif: r.oif, gateway: r.gateway === undefined ? undefined : formatIp(r.gateway) });
  });
  const failed = removed.find((x) => x.error !== undefined)?.error;
  if (failed !== undefined) throw failed;
  if (t.network6 !== undefined) {
    await removeStale6(nl, log, link.index, t.network6);
    await routeNetwork6(nl, start, link.index, t.network6);
  }
  if (!v4) return;
  start.check('routing the network');
  await nl.ensureUnreachableRoute({ dst: network, metric: FALLBACK_METRIC, protocol: RTPROT_RUDDER, table: TABLE_MAIN });
  start.undo(`delete unreachable route ${formatCidr(network)}`, async () => only(await nl.deleteRoutes([{ dst: network, metric: FALLBACK_METRIC, table: TABLE_MAIN }])));
  const key: RouteKey = { dst: network, oif: link.index, table: TABLE_MAIN };
  only(await nl.ensureRoutes([{ dst: network, oif: link.index, scope: 'link', protocol: RTPROT_RUDDER, table: TABLE_MAIN }]));
  start.undo(`delete route ${formatCidr(network)}`, async () => only(await nl.deleteRoutes([key])));
}

/** Rudder's IPv6 routes that are not this backend's (the IPv6Network to the TUN and its unreachable twin). */
async function removeStale6(nl: Netlink, log: Logger, oif: number, network6: Cidr6): Promise<void> {
  const stale = (await nl.listRoutes6({ protocol: RTPROT_RUDDER, table: TABLE_MAIN })).filter((r) => {
    if (!cidr6Equals(r.dst, network6)) return true;
    return !((r.type === RTN_UNICAST && r.oif === oif && r.gateway === undefined) || (r.type === RTN_UNREACHABLE && r.metric === FALLBACK_METRIC));
  });
  const removed = await nl.deleteRoutes6(stale.map((r) => ({ dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}) })));
  stale.forEach((r, i) => {
    if (removed[i]?.error === undefined) log.info('removed stale route', { dst: formatCidr6(r.dst), oif: r.oif, gateway: r.gateway === undefined ? undefined : formatIp6(r.gateway) });
  });
  const failed = removed.find((x) => x.error !== undefined)?.error;
  if (failed !== undefined) throw failed;
}

/** The IPv6Network to the TUN, its `unreachable` twin first (fail closed, as IPv4's). */
async function routeNetwork6(nl: Netlink, start: StartGuard, oif: number, network6: Cidr6): Promise<void> {
  start.check('routing the IPv6 network');
  await nl.ensureUnreachableRoute6({ dst: network6, metric: FALLBACK_METRIC, protocol: RTPROT_RUDDER, table: TABLE_MAIN });
  start.undo(`delete unreachable route ${formatCidr6(network6)}`, async () => only(await nl.deleteRoutes6([{ dst: network6, metric: FALLBACK_METRIC, table: TABLE_MAIN }])));
  only(await nl.ensureRoutes6([{ dst: network6, oif, protocol: RTPROT_RUDDER, table: TABLE_MAIN }]));
  start.undo(`delete route ${formatCidr6(network6)}`, async () => only(await nl.deleteRoutes6([{ dst: network6, oif, table: TABLE_MAIN }])));
}
