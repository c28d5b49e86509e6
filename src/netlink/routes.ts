/**
 * Routes of either family, written once over a RouteFamily (ROUTE4, ROUTE6).
 * What IPv6 does differently is the kernel's: an IPv6 route has no scope of
 * its own (always universe), never metric 0 (a request without one is stored
 * at IPV6_DEFAULT_METRIC, so that is the default here too), and an
 * `unreachable` route hangs on the loopback device.
 */
import * as rt from './rtmsg';
import type { PrefixOf } from '../ip/family';
import { contains, maskOf } from '../ip/ipv4';
import { Conn, CREATE_REPLACE, dev, enumNum } from './conn';
import { INET, INET6, type NetFamily } from './family';
import { routeMessage, RTM_DELROUTE, RTM_NEWROUTE, RTNH_F_ONLINK, type RouteWire } from './wire';
import { linkByIndex } from './links';
import { listAddresses } from './addrs';
import {
  RTPROT_RUDDER,
  TABLE_MAIN,
  type DefaultRouteIface,
  type EnsureResult,
  type Route6Info,
  type RouteFilter,
  type RouteInfo,
  type RouteInfoOf,
  type RouteKeyOf,
  type RouteScope,
  type RouteSpecOf,
  type UnreachableRouteSpecOf,
  RTN_UNICAST,
  RTN_UNREACHABLE,
} from './types';

const SCOPES: Record<RouteScope, number> = { universe: 0, link: 253, host: 254 };

/** The family's addresses, and how its routes are reported and scoped. */
export interface RouteFamily<A extends number | bigint, I extends RouteInfoOf<A>> extends NetFamily<A> {
  /** A dumped route as listRoutes reports it. */
  info(m: rt.RouteMessage): I;
  /** The scope a request gets: IPv4's default depends on the gateway; IPv6 routes are always universe. */
  scope(spec: RouteSpecOf<A>): RouteScope;
}

/** The fields both families' routes report. */
function decode<A extends number | bigint>(fam: NetFamily<A>, m: rt.RouteMessage): RouteInfoOf<A> {
  const flags = m.data.flags ? rt.formatRouteFlags(m.data.flags) : 0;
  return {
    dst: { ip: fam.fromBuf(m.attrs.dst) ?? fam.zero, prefix: m.data.dstLen ?? 0 },
    // rtm_table is a u8; tables above 255 are only in RTA_TABLE.
    table: m.attrs.table ?? m.data.table ?? 0,
    oif: m.attrs.oif,
    gateway: fam.fromBuf(m.attrs.gateway),
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    protocol: enumNum(rt.RouteProtocol, m.data.protocol),
    type: enumNum(rt.RouteType, m.data.type),
    metric: m.attrs.priority ?? 0,
    prefsrc: fam.fromBuf(m.attrs.prefsrc),
  };
}

export function toRouteInfo(m: rt.RouteMessage): RouteInfo {
  return { ...decode(INET, m), scope: enumNum(rt.RouteScope, m.data.scope) };
}

export function toRoute6Info(m: rt.RouteMessage): Route6Info {
  return decode(INET6, m);
}

export const ROUTE4: RouteFamily<number, RouteInfo> = {
  ...INET,
  info: toRouteInfo,
  scope: (s) => s.scope ?? (s.gateway === undefined ? 'link' : 'universe'),
};

export const ROUTE6: RouteFamily<bigint, Route6Info> = { ...INET6, info: toRoute6Info, scope: () => 'universe' };

/** Any family's RouteFamily, for the functions that only read its addresses. */
type Fam<A extends number | bigint> = RouteFamily<A, RouteInfoOf<A>>;

export async function listRoutes<A extends number | bigint, I extends RouteInfoOf<A>>(c: Conn, fam: RouteFamily<A, I>, filter: RouteFilter = {}): Promise<I[]> {
  const msgs = await c.call('list', `${fam.label}routes`, (s) => s.getRoutes({ family: fam.af }));
  const table = filter.table ?? TABLE_MAIN;
  return msgs
    .filter((m) => m.data.family === fam.af)
    .map((m) => fam.info(m))
    .filter(
      (r) =>
        (table === 'all' || r.table === table) &&
        (filter.oif === undefined || r.oif === filter.oif) &&
        (filter.protocol === undefined || r.protocol === filter.protocol),
    );
}

function describe<A extends number | bigint>(fam: Fam<A>, k: RouteKeyOf<A>): string {
  const parts = [fam.formatCidr(k.dst)];
  if (k.gateway !== undefined) parts.push(`via ${fam.formatIp(k.gateway)}`);
  if (k.oif !== undefined) parts.push(`dev ${dev(k.oif)}`);
  if (k.metric) parts.push(`metric ${k.metric}`);
  if (k.table !== undefined && k.table !== TABLE_MAIN) parts.push(`table ${k.table}`);
  return `route ${parts.join(' ')}`;
}

export type NormalRoute<A extends number | bigint> = Required<Omit<RouteSpecOf<A>, 'gateway'>> & { readonly gateway: A | undefined };

export function normalise<A extends number | bigint>(fam: Fam<A>, spec: RouteSpecOf<A>): NormalRoute<A> {
  return {
    dst: spec.dst,
    oif: spec.oif,
    gateway: spec.gateway,
    onlink: spec.onlink ?? false,
    scope: fam.scope(spec),
    protocol: spec.protocol ?? RTPROT_RUDDER,
    metric: fam.metric(spec.metric),
    table: spec.table ?? TABLE_MAIN,
  };
}

/** The kernel route `r` is exactly what `n` asks for (an IPv6 route reports no scope to compare). */
export function routeMatches<A extends number | bigint>(fam: Fam<A>, r: RouteInfoOf<A>, n: NormalRoute<A>): boolean {
  return (
    r.metric === n.metric &&
    r.oif === n.oif &&
    r.gateway === (n.gateway === undefined ? undefined : fam.key(n.gateway)) &&
    r.onlink === n.onlink &&
    (r.scope === undefined || r.scope === SCOPES[n.scope]) &&
    r.protocol === n.protocol
  );
}

/**
 * The request fields for a route on `dst` in `table` at `metric`: tables above
 * 255 only fit RTA_TABLE (rtm_table is a u8), metric 0 is no RTA_PRIORITY.
 */
function routeWire<A extends number | bigint>(
  fam: Fam<A>,
  dst: PrefixOf<A>,
  table: number,
  metric: number | undefined,
  rest: Omit<RouteWire, 'family' | 'dstLen' | 'table' | 'dst' | 'priority' | 'tableAttr'>,
): RouteWire {
  return {
    family: fam.af,
    dstLen: dst.prefix,
    table: table < 256 ? table : 0,
    dst: dst.ip,
    priority: metric ? metric : undefined,
    tableAttr: table >= 256 ? table : undefined,
    ...rest,
  };
}

/** RTM_NEWROUTE with NLM_F_CREATE|NLM_F_REPLACE (replaces the route with the same dst/table/metric). */
export function newRouteRequest<A extends number | bigint>(c: Conn, fam: Fam<A>, n: NormalRoute<A>): Promise<void> {
  return c.send('replace', () => describe(fam, n), (seq) =>
    routeMessage(
      RTM_NEWROUTE,
      CREATE_REPLACE,
      seq,
      routeWire(fam, n.dst, n.table, n.metric, { protocol: n.protocol, scope: SCOPES[n.scope], type: RTN_UNICAST, flags: n.onlink ? RTNH_F_ONLINK : 0, oif: n.oif, gateway: n.gateway }),
    ),
  );
}

/**
 * Makes `n` the route to its destination, given the unicast routes there now
 * (`toDst`): written unless one already matches; returns whether anything changed.
 */
export async function ensureAgainst<A extends number | bigint>(c: Conn, fam: Fam<A>, n: NormalRoute<A>, toDst: ReadonlyArray<RouteInfoOf<A>>): Promise<boolean> {
  let changed = false;
  if (!toDst.some((r) => routeMatches(fam, r, n))) {
    await newRouteRequest(c, fam, n);
    changed = true;
  }
  // REPLACE only overwrites the route with the same metric; a copy Rudder made
  // at another metric (or one it made before the replace) is stale.
  for (const r of toDst) {
    if (r.protocol !== n.protocol || r.metric === n.metric) continue;
    if (await deleteRoute(c, fam, { dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}) })) changed = true;
  }
  return changed;
}

export function deleteRoute<A extends number | bigint>(c: Conn, fam: Fam<A>, k: RouteKeyOf<A>): Promise<boolean> {
  const table = k.table ?? TABLE_MAIN;
  return c.sendTolerant('delete', () => describe(fam, k), ['ESRCH', 'ENOENT'], (seq) =>
    // RT_SCOPE_NOWHERE (255) and type 0: match the route whatever its scope and type (the kernel compares them otherwise).
    routeMessage(RTM_DELROUTE, 0, seq, routeWire(fam, k.dst, table, k.metric, { protocol: 0, scope: 255, type: 0, flags: 0, oif: k.oif, gateway: k.gateway })),
  );
}

/**
 * An `unreachable` route (no device: the kernel answers "network unreachable"
 * and drops) at `metric`, written unless one exactly like it is there. A route
 * of another type at the same metric would be replaced (NLM_F_REPLACE on
 * dst/table/metric), which is why callers pick a metric of their own.
 */
export async function ensureUnreachableRoute<A extends number | bigint>(c: Conn, fam: Fam<A>, spec: UnreachableRouteSpecOf<A>): Promise<EnsureResult> {
  const table = spec.table ?? TABLE_MAIN;
  const protocol = spec.protocol ?? RTPROT_RUDDER;
  const metric = fam.metric(spec.metric);
  const there = (await listRoutes(c, fam, { table })).some(
    (r) => r.dst.ip === fam.key(spec.dst.ip) && r.dst.prefix === spec.dst.prefix && r.type === RTN_UNREACHABLE && r.metric === metric && r.protocol === protocol,
  );
  if (there) return { changed: false };
  const what = `unreachable route ${fam.formatCidr(spec.dst)} metric ${metric}`;
  await c.send('replace', () => what, (seq) =>
    routeMessage(RTM_NEWROUTE, CREATE_REPLACE, seq, routeWire(fam, spec.dst, table, metric, { protocol, scope: SCOPES.universe, type: RTN_UNREACHABLE, flags: 0 })),
  );
  return { changed: true };
}

/**
 * The interface of the lowest-metric IPv4 default route in the main table,
 * with the address it sources traffic from: the route's prefsrc if set, else
 * the link's primary address on the gateway's subnet, else its first primary.
 */
export async function defaultRouteInterface(c: Conn): Promise<DefaultRouteIface | null> {
  const defaults = (await listRoutes(c, ROUTE4, { table: TABLE_MAIN }))
    .filter((r) => r.dst.prefix === 0 && r.type === RTN_UNICAST && r.oif !== undefined)
    .sort((a, b) => a.metric - b.metric);
  for (const r of defaults) {
    const link = await linkByIndex(c, r.oif as number);
    if (link === null) continue;
    const addrs = await listAddresses(c, INET, link.index);
    const primaries = addrs.filter((a) => !a.secondary);
    const pick =
      (r.prefsrc !== undefined ? addrs.find((a) => a.ip === r.prefsrc) : undefined) ??
      (r.gateway !== undefined ? primaries.find((a) => contains({ ip: (a.ip & maskOf(a.prefix)) >>> 0, prefix: a.prefix }, r.gateway as number)) : undefined) ??
      primaries[0] ??
      addrs[0];
    if (pick === undefined) continue; // no IPv4 address: cannot carry the underlay
    return { link, address: pick.ip, prefix: pick.prefix, gateway: r.gateway, metric: r.metric };
  }
  return null;
}
