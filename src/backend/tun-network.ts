/**
 * What the two backends whose data plane owns a TUN (udp, wireguard) share:
 * the steps of their start up to the routed device (netlink, other
 * backends' devices removed, the data plane opened, the device's address,
 * MTU and state, the Network routed to it and the fail-closed `unreachable`
 * route beside it; docs/architecture.md, "udp"), the guard of their
 * Network's calls after stop, and the one choice of underlay family
 * (underlayOf). Every step is an ensure, registered on the caller's
 * StartGuard for undo. Runs on the daemon's event loop only.
 */
import { RudderError, describeError } from '../errors';
import { type Cidr, formatCidr, formatIp } from '../ip/ipv4';
import { type Cidr6, cidr6Equals, formatCidr6, formatIp6 } from '../ip/ipv6';
import type { Logger } from '../log';
import type { NetworkConfig } from '../config';
import { hasIpv4, type Lease } from '../subnet/lease';
import { only, openNetlink as openRealNetlink, RTN_UNICAST, RTN_UNREACHABLE, RTPROT_RUDDER, TABLE_MAIN, type Netlink, type RouteKey } from '../netlink';
import type { DataPlaneOptions, UnderlayFamily } from '../dataplane/types';
import { type StartGuard, defaultEvery, removeForeignDevices } from './common';
import type { ExternalInterface } from './types';
import { realClock, type PacerClock, type PacerOptions } from './udp/pacer';
import type { Engine } from './udp/env';

/** What a TUN backend takes from outside, faked by unit tests; tunDeps fills in the defaults. */
export interface TunDeps {
  openNetlink?: () => Netlink;
  /** Runs `fn` every `ms`; returns a cancel function. Default: an unref'd setInterval. */
  every?: (ms: number, fn: () => void) => () => void;
  /** Where RUDDER_UDP_OFFLOADS/QUEUES/BUSY_POLL are read (default process.env): both backends run udp's engine. */
  env?: NodeJS.ProcessEnv;
  /** Clock and timer of the swap pacing (default performance.now and setTimeout). */
  clock?: PacerClock;
  pacer?: PacerOptions;
}

export function tunDeps(deps: TunDeps): Required<TunDeps> {
  return {
    openNetlink: deps.openNetlink ?? openRealNetlink,
    every: deps.every ?? defaultEvery,
    env: deps.env ?? process.env,
    clock: deps.clock ?? realClock,
    pacer: deps.pacer ?? {},
  };
}

/** This host's lease as a TUN backend routes it. */
export interface TunLease {
  readonly own: Lease;
  /** The whole overlay Network; 0.0.0.0/0 (IPv6-only): no IPv4 at all. */
  readonly network: Cidr;
  /** False for an IPv6-only lease: no IPv4 packet is local, none gets an ICMP error. */
  readonly v4: boolean;
  /** IPv6 (dual-stack or IPv6-only): this host's IPv6 subnet and the IPv6Network, beside the IPv4 pair. */
  readonly own6?: Cidr6;
  readonly network6?: Cidr6;
}

export function tunLease(own: Lease, config: NetworkConfig): TunLease {
  const own6 = config.ipv6 !== undefined ? own.ipv6Subnet : undefined;
  const network6 = own6 !== undefined ? config.ipv6?.network : undefined;
  return { own, network: config.network, v4: hasIpv4(own), ...(own6 !== undefined && network6 !== undefined ? { own6, network6 } : {}) };
}

/** Throws E_BACKEND when the underlay's MTU leaves a TUN less than IPv4's minimum (68) after the encapsulation. */
export function checkTunMtu(backend: string, ext: ExternalInterface, mtu: number, overhead: number, hint = ''): void {
  if (mtu < 68) {
    throw new RudderError('E_BACKEND', `${backend}: underlay ${ext.name} MTU ${ext.mtu} leaves ${mtu} after ${overhead} bytes of encapsulation: expected at least 68${hint}`);
  }
}

/** A TUN backend's start, as the shared steps need it. */
export interface TunStart<D> {
  /** Backend name, for messages. */
  readonly backend: string;
  /** The TUN the data plane creates. */
  readonly dev: string;
  readonly lease: TunLease;
  readonly ext: ExternalInterface;
  readonly family: UnderlayFamily;
  readonly port: number;
  readonly mtu: number;
  readonly engine: Engine;
  readonly openNetlink: () => Netlink;
  /** Opens the data plane (which creates `dev`). */
  readonly open: (opts: DataPlaneOptions) => D;
  /** Runs right after the data plane's own undo is registered: for an undo that must run before the data plane stops. */
  readonly opened?: (dp: D) => void;
}

/**
 * The start both TUN backends share, each step registered on `start`:
 * netlink, the other backends' devices removed, the data plane opened (bound
 * to this host's address on an IPv4 underlay, to any on IPv6), then the
 * kernel side (ensureTunNetwork). The caller unwinds `start` on error.
 */
export async function startTunDataPlane<D extends { stop(): void }>(start: StartGuard, log: Logger, t: TunStart<D>): Promise<D> {
  const { dev, family, lease } = t;
  const { own, v4, own6 } = lease;
  start.check('opening netlink');
  const nl = t.openNetlink();
  start.undo('close netlink', () => nl.close());
  // Runs after the data plane stopped: only a TUN it failed to remove is left.
  start.undo(`remove left-over ${dev}`, async () => {
    const l = await nl.linkByName(dev);
    if (l !== null) await nl.deleteLink(l.index);
  });

  start.check('removing other backends\' devices');
  await removeForeignDevices(nl, dev, log);

  start.check('opening the data plane');
  const opened = t.open({
    tunName: dev,
    bindAddress: family === 'ipv4' ? t.ext.address : 0,
    ...(family === 'ipv6' ? { underlay: family } : {}),
    port: t.port,
    localSubnet: v4 ? { ip: own.subnet.ip, prefix: own.subnet.prefix } : { ip: 0, prefix: 32 },
    icmpSource: v4 ? own.subnet.ip : 0,
    ...(own6 !== undefined ? { localSubnet6: own6, icmpSource6: own6.ip } : {}),
    mtu: t.mtu,
    offloads: t.engine.offloads,
    busyPoll: t.engine.busyPoll,
    queues: t.engine.queues,
  });
  start.undo('stop data plane', () => opened.stop());
  t.opened?.(opened);

  await ensureTunNetwork(nl, start, log, {
    backend: t.backend,
    dev,
    own: own.subnet,
    mtu: t.mtu,
    network: lease.network,
    ...(own6 !== undefined && lease.network6 !== undefined ? { own6, network6: lease.network6 } : {}),
  });
  return opened;
}

/**
 * A started TUN backend's stop, run once (`onStop` first: timers, the
 * pacer), and the guard its other calls take: `live('apply')` throws
 * E_BACKEND once stop was called.
 */
export function tunStop(backend: string, start: StartGuard, log: Logger, onStop: () => void): { live(what: string): void; stop(): Promise<void> } {
  let stopping: Promise<void> | undefined;
  return {
    live(what: string): void {
      if (stopping !== undefined) throw new RudderError('E_BACKEND', `${backend}: ${what} after stop`);
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        onStop();
        const errors = await start.unwind(log);
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `${backend}: stop left ${errors.length} step(s) undone: ${describeError(errors[0])}`, { cause: errors[0] });
        }
        log.info(`${backend} backend stopped`);
      })();
      return stopping;
    },
  };
}

/** Logs the data plane's counters (debug) when they changed since the last call; a failed read is a warning. */
export function counterLogger(backend: string, log: Logger, read: () => object): () => void {
  let last = '';
  return () => {
    try {
      const c = JSON.stringify(read());
      if (c === last) return;
      last = c;
      log.debug('data plane counters', JSON.parse(c) as Record<string, unknown>);
    } catch (e) {
      log.warn(`${backend}: reading data plane counters failed`, { error: describeError(e) });
    }
  };
}

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
