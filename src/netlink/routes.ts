/** IPv4 routes. */
import * as rt from './rtmsg';
import { contains, formatCidr, formatIp, maskOf } from '../ip/ipv4';
import { AF_INET, bufToIp, Conn, CREATE_REPLACE, dev, enumNum } from './conn';
import { routeMessage, RTM_DELROUTE, RTM_NEWROUTE, RTNH_F_ONLINK, type RouteWire } from './wire';
import { linkByIndex } from './links';
import { listAddresses } from './addrs';
import {
  RTPROT_RUDDER,
  TABLE_MAIN,
  type DefaultRouteIface,
  type EnsureResult,
  type RouteFilter,
  type RouteInfo,
  type RouteKey,
  type RouteScope,
  type RouteSpec,
  type UnreachableRouteSpec,
  RTN_UNICAST,
  RTN_UNREACHABLE,
} from './types';

const SCOPES: Record<RouteScope, number> = { universe: 0, link: 253, host: 254 };

type RouteMsg = rt.RouteMessage;

export function toRouteInfo(m: RouteMsg): RouteInfo {
  const flags = m.data.flags ? rt.formatRouteFlags(m.data.flags) : 0;
  return {
    dst: { ip: bufToIp(m.attrs.dst) ?? 0, prefix: m.data.dstLen ?? 0 },
    // rtm_table is a u8; tables above 255 are only in RTA_TABLE.
    table: m.attrs.table ?? m.data.table ?? 0,
    oif: m.attrs.oif,
    gateway: bufToIp(m.attrs.gateway),
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    scope: enumNum(rt.RouteScope, m.data.scope),
    protocol: enumNum(rt.RouteProtocol, m.data.protocol),
    type: enumNum(rt.RouteType, m.data.type),
    metric: m.attrs.priority ?? 0,
    prefsrc: bufToIp(m.attrs.prefsrc),
  };
}

export async function listRoutes(c: Conn, filter: RouteFilter = {}): Promise<RouteInfo[]> {
  const msgs = await c.call('list', 'routes', (s) => s.getRoutes({ family: AF_INET }));
  const table = filter.table ?? TABLE_MAIN;
  return msgs
    .filter((m) => m.data.family === AF_INET)
    .map(toRouteInfo)
    .filter(
      (r) =>
        (table === 'all' || r.table === table) &&
        (filter.oif === undefined || r.oif === filter.oif) &&
        (filter.protocol === undefined || r.protocol === filter.protocol),
    );
}

function describe(k: RouteKey): string {
  const parts = [formatCidr(k.dst)];
  if (k.gateway !== undefined) parts.push(`via ${formatIp(k.gateway)}`);
  if (k.oif !== undefined) parts.push(`dev ${dev(k.oif)}`);
  if (k.metric) parts.push(`metric ${k.metric}`);
  if (k.table !== undefined && k.table !== TABLE_MAIN) parts.push(`table ${k.table}`);
  return `route ${parts.join(' ')}`;
}

export type NormalRoute = Required<Omit<RouteSpec, 'gateway'>> & { gateway: number | undefined };

export function normalise(spec: RouteSpec): NormalRoute {
  return {
    dst: spec.dst,
    oif: spec.oif,
    gateway: spec.gateway,
    onlink: spec.onlink ?? false,
    scope: spec.scope ?? (spec.gateway === undefined ? 'link' : 'universe'),
    protocol: spec.protocol ?? RTPROT_RUDDER,
    metric: spec.metric ?? 0,
    table: spec.table ?? TABLE_MAIN,
  };
}

function sameDst(r: RouteInfo, dst: { ip: number; prefix: number }): boolean {
  return r.dst.ip === dst.ip >>> 0 && r.dst.prefix === dst.prefix;
}

/** The kernel route `r` is exactly what `n` asks for. */
export function routeMatches(r: RouteInfo, n: NormalRoute): boolean {
  return (
    r.metric === n.metric &&
    r.oif === n.oif &&
    r.gateway === (n.gateway === undefined ? undefined : n.gateway >>> 0) &&
    r.onlink === n.onlink &&
    r.scope === SCOPES[n.scope] &&
    r.protocol === n.protocol
  );
}

/**
 * The request fields for a route on `dst` in `table` at `metric`: tables above
 * 255 only fit RTA_TABLE (rtm_table is a u8), metric 0 is no RTA_PRIORITY.
 */
function routeWire(dst: { ip: number; prefix: number }, table: number, metric: number | undefined, rest: Omit<RouteWire, 'family' | 'dstLen' | 'table' | 'dst' | 'priority' | 'tableAttr'>): RouteWire {
  return {
    family: AF_INET,
    dstLen: dst.prefix,
    table: table < 256 ? table : 0,
    dst: dst.ip,
    priority: metric ? metric : undefined,
    tableAttr: table >= 256 ? table : undefined,
    ...rest,
  };
}

/** RTM_NEWROUTE with NLM_F_CREATE|NLM_F_REPLACE (replaces the route with the same dst/table/metric). */
export function newRouteRequest(c: Conn, n: NormalRoute): Promise<void> {
  return c.send('replace', () => describe(n), (seq) =>
    routeMessage(
      RTM_NEWROUTE,
      CREATE_REPLACE,
      seq,
      routeWire(n.dst, n.table, n.metric, { protocol: n.protocol, scope: SCOPES[n.scope], type: RTN_UNICAST, flags: n.onlink ? RTNH_F_ONLINK : 0, oif: n.oif, gateway: n.gateway }),
    ),
  );
}

/**
 * Makes `n` the route to its destination, given the unicast routes there now
 * (`toDst`): written unless one already matches; returns whether anything changed.
 */
export async function ensureAgainst(c: Conn, n: NormalRoute, toDst: readonly RouteInfo[]): Promise<boolean> {
  let changed = false;
  if (!toDst.some((r) => routeMatches(r, n))) {
    await newRouteRequest(c, n);
    changed = true;
  }
  // REPLACE only overwrites the route with the same metric; a copy Rudder made
  // at another metric (or one it made before the replace) is stale.
  for (const r of toDst) {
    if (r.protocol !== n.protocol || r.metric === n.metric) continue;
    if (await deleteRoute(c, { dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}) })) changed = true;
  }
  return changed;
}

export function deleteRoute(c: Conn, k: RouteKey): Promise<boolean> {
  const table = k.table ?? TABLE_MAIN;
  return c.sendTolerant('delete', () => describe(k), ['ESRCH', 'ENOENT'], (seq) =>
    // RT_SCOPE_NOWHERE (255) and type 0: match the route whatever its scope and type (the kernel compares them otherwise).
    routeMessage(RTM_DELROUTE, 0, seq, routeWire(k.dst, table, k.metric, { protocol: 0, scope: 255, type: 0, flags: 0, oif: k.oif, gateway: k.gateway })),
  );
}

/**
 * An `unreachable` route (no device: the kernel answers "network unreachable"
 * and drops) at `metric`, written unless one exactly like it is there. A route
 * of another type at the same metric would be replaced (NLM_F_REPLACE on
 * dst/table/metric), which is why callers pick a metric of their own.
 */
export async function ensureUnreachableRoute(c: Conn, spec: UnreachableRouteSpec): Promise<EnsureResult> {
  const table = spec.table ?? TABLE_MAIN;
  const protocol = spec.protocol ?? RTPROT_RUDDER;
  const there = (await listRoutes(c, { table })).some(
    (r) => sameDst(r, spec.dst) && r.type === RTN_UNREACHABLE && r.metric === spec.metric && r.protocol === protocol,
  );
  if (there) return { changed: false };
  const what = `unreachable route ${formatCidr(spec.dst)} metric ${spec.metric}`;
  await c.send('replace', () => what, (seq) =>
    routeMessage(RTM_NEWROUTE, CREATE_REPLACE, seq, routeWire(spec.dst, table, spec.metric, { protocol, scope: SCOPES.universe, type: RTN_UNREACHABLE, flags: 0 })),
  );
  return { changed: true };
}

/**
 * The interface of the lowest-metric IPv4 default route in the main table,
 * with the address it sources traffic from: the route's prefsrc if set, else
 * the link's primary address on the gateway's subnet, else its first primary.
 */
export async function defaultRouteInterface(c: Conn): Promise<DefaultRouteIface | null> {
  const defaults = (await listRoutes(c, { table: TABLE_MAIN }))
    .filter((r) => r.dst.prefix === 0 && r.type === RTN_UNICAST && r.oif !== undefined)
    .sort((a, b) => a.metric - b.metric);
  for (const r of defaults) {
    const link = await linkByIndex(c, r.oif as number);
    if (link === null) continue;
    const addrs = await listAddresses(c, link.index);
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
