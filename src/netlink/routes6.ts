/**
 * IPv6 routes: the IPv4 module's rules (routes.ts) over 128-bit addresses.
 * What differs is the kernel's: an IPv6 route has no scope of its own
 * (always universe), never metric 0 (a request without one is stored at
 * IPV6_DEFAULT_METRIC, so that is the default here too), and an
 * `unreachable` route hangs on the loopback device.
 */
import * as rt from './rtmsg';
import { formatCidr6, formatIp6, type Cidr6 } from '../ip/ipv6';
import { Conn, CREATE_REPLACE, dev, enumNum } from './conn';
import { AF_INET6, bufToIp6, routeMessage, RTM_DELROUTE, RTM_NEWROUTE, RTNH_F_ONLINK, type RouteWire } from './wire';
import {
  IPV6_DEFAULT_METRIC,
  RTN_UNICAST,
  RTN_UNREACHABLE,
  RTPROT_RUDDER,
  TABLE_MAIN,
  type EnsureResult,
  type Route6Info,
  type Route6Key,
  type Route6Spec,
  type RouteFilter,
  type Unreachable6Spec,
} from './types';

export function toRoute6Info(m: rt.RouteMessage): Route6Info {
  const flags = m.data.flags ? rt.formatRouteFlags(m.data.flags) : 0;
  return {
    dst: { ip: bufToIp6(m.attrs.dst) ?? 0n, prefix: m.data.dstLen ?? 0 },
    table: m.attrs.table ?? m.data.table ?? 0,
    oif: m.attrs.oif,
    gateway: bufToIp6(m.attrs.gateway),
    onlink: (flags & RTNH_F_ONLINK) !== 0,
    protocol: enumNum(rt.RouteProtocol, m.data.protocol),
    type: enumNum(rt.RouteType, m.data.type),
    metric: m.attrs.priority ?? 0,
    prefsrc: bufToIp6(m.attrs.prefsrc),
  };
}

export async function listRoutes6(c: Conn, filter: RouteFilter = {}): Promise<Route6Info[]> {
  const msgs = await c.call('list', 'IPv6 routes', (s) => s.getRoutes({ family: AF_INET6 }));
  const table = filter.table ?? TABLE_MAIN;
  return msgs
    .filter((m) => m.data.family === AF_INET6)
    .map(toRoute6Info)
    .filter(
      (r) =>
        (table === 'all' || r.table === table) &&
        (filter.oif === undefined || r.oif === filter.oif) &&
        (filter.protocol === undefined || r.protocol === filter.protocol),
    );
}

function describe(k: Route6Key): string {
  const parts = [formatCidr6(k.dst)];
  if (k.gateway !== undefined) parts.push(`via ${formatIp6(k.gateway)}`);
  if (k.oif !== undefined) parts.push(`dev ${dev(k.oif)}`);
  if (k.metric) parts.push(`metric ${k.metric}`);
  if (k.table !== undefined && k.table !== TABLE_MAIN) parts.push(`table ${k.table}`);
  return `route ${parts.join(' ')}`;
}

export type NormalRoute6 = Required<Omit<Route6Spec, 'gateway'>> & { gateway: bigint | undefined };

export function normalise6(spec: Route6Spec): NormalRoute6 {
  return {
    dst: spec.dst,
    oif: spec.oif,
    gateway: spec.gateway,
    onlink: spec.onlink ?? false,
    protocol: spec.protocol ?? RTPROT_RUDDER,
    metric: spec.metric || IPV6_DEFAULT_METRIC,
    table: spec.table ?? TABLE_MAIN,
  };
}

const sameDst = (r: Route6Info, dst: Cidr6): boolean => r.dst.ip === dst.ip && r.dst.prefix === dst.prefix;

/** The kernel route `r` is exactly what `n` asks for. */
export function route6Matches(r: Route6Info, n: NormalRoute6): boolean {
  return r.metric === n.metric && r.oif === n.oif && r.gateway === n.gateway && r.onlink === n.onlink && r.protocol === n.protocol;
}

/** The request fields for an IPv6 route on `dst` in `table` at `metric` (see routes.ts routeWire). */
function routeWire6(dst: Cidr6, table: number, metric: number | undefined, rest: Omit<RouteWire, 'family' | 'dstLen' | 'table' | 'dst' | 'priority' | 'tableAttr'>): RouteWire {
  return {
    family: AF_INET6,
    dstLen: dst.prefix,
    table: table < 256 ? table : 0,
    dst: dst.ip,
    priority: metric ? metric : undefined,
    tableAttr: table >= 256 ? table : undefined,
    ...rest,
  };
}

/** RTM_NEWROUTE with NLM_F_CREATE|NLM_F_REPLACE (replaces the route with the same dst/table/metric). */
export function newRoute6Request(c: Conn, n: NormalRoute6): Promise<void> {
  return c.send('replace', () => describe(n), (seq) =>
    routeMessage(
      RTM_NEWROUTE,
      CREATE_REPLACE,
      seq,
      routeWire6(n.dst, n.table, n.metric, { protocol: n.protocol, scope: 0, type: RTN_UNICAST, flags: n.onlink ? RTNH_F_ONLINK : 0, oif: n.oif, gateway: n.gateway }),
    ),
  );
}

/** As routes.ts ensureAgainst: `n` written unless one of `toDst` matches; other Rudder copies at other metrics removed. */
export async function ensureAgainst6(c: Conn, n: NormalRoute6, toDst: readonly Route6Info[]): Promise<boolean> {
  let changed = false;
  if (!toDst.some((r) => route6Matches(r, n))) {
    await newRoute6Request(c, n);
    changed = true;
  }
  for (const r of toDst) {
    if (r.protocol !== n.protocol || r.metric === n.metric) continue;
    if (await deleteRoute6(c, { dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}) })) changed = true;
  }
  return changed;
}

/** Without a metric the kernel deletes the first route to dst whatever its metric. */
export function deleteRoute6(c: Conn, k: Route6Key): Promise<boolean> {
  const table = k.table ?? TABLE_MAIN;
  return c.sendTolerant('delete', () => describe(k), ['ESRCH', 'ENOENT'], (seq) =>
    routeMessage(RTM_DELROUTE, 0, seq, routeWire6(k.dst, table, k.metric, { protocol: 0, scope: 255, type: 0, flags: 0, oif: k.oif, gateway: k.gateway })),
  );
}

/** As routes.ts ensureUnreachableRoute, for IPv6. */
export async function ensureUnreachableRoute6(c: Conn, spec: Unreachable6Spec): Promise<EnsureResult> {
  const table = spec.table ?? TABLE_MAIN;
  const protocol = spec.protocol ?? RTPROT_RUDDER;
  const metric = spec.metric || IPV6_DEFAULT_METRIC;
  const there = (await listRoutes6(c, { table })).some((r) => sameDst(r, spec.dst) && r.type === RTN_UNREACHABLE && r.metric === metric && r.protocol === protocol);
  if (there) return { changed: false };
  const what = `unreachable route ${formatCidr6(spec.dst)} metric ${metric}`;
  await c.send('replace', () => what, (seq) =>
    routeMessage(RTM_NEWROUTE, CREATE_REPLACE, seq, routeWire6(spec.dst, table, metric, { protocol, scope: 0, type: RTN_UNREACHABLE, flags: 0 })),
  );
  return { changed: true };
}
