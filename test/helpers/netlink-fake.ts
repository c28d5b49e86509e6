/**
 * The one in-memory netlink facade for unit tests: the whole `Netlink`
 * interface (checked below at compile time) over plain lists of links,
 * addresses, routes, neighbors and FDB entries, with the kernel's semantics
 * as far as the backends can tell: an ensure reports whether it changed
 * anything, a delete whether something was there, deleting a link takes its
 * routes, neighbors, FDB entries and addresses with it, and every change is
 * sent to watchKernel subscribers (Rudder-protocol routes, and objects of
 * links they are interested in) as the kernel would, after the call.
 *
 * Every change request is recorded in `calls`, one entry per object (a batch
 * of three routes is three entries, named by the one-object operation),
 * and any of them can be made to fail (`failOn`); reads are not recorded.
 * The real kernel side is proven by the e2e tests.
 */
import { formatCidr, formatIp, type Cidr } from '../../src/ip/ipv4';
import { formatCidr6, formatIp6, type Cidr6 } from '../../src/ip/ipv6';
import {
  IPV6_DEFAULT_METRIC,
  RTN_UNICAST,
  RTN_UNREACHABLE,
  RTPROT_RUDDER,
  TABLE_MAIN,
  type AddrSpec,
  type Addr6Spec,
  type Addresses6Result,
  type AddressesResult,
  type BatchResult,
  type DefaultRouteIface,
  type EnsureOptions,
  type EnsureResult,
  type Fdb6Spec,
  type FdbSpec,
  type KernelChange,
  type LinkInfo,
  type Neighbor6Key,
  type Neighbor6Spec,
  type NeighborKey,
  type NeighborSpec,
  type Netlink,
  type RouteFilter,
  type Route6Info,
  type Route6Key,
  type Route6Spec,
  type RouteInfo,
  type RouteKey,
  type RouteSpec,
  type Unreachable6Spec,
  type UnreachableRouteSpec,
  type VxlanSpec,
} from '../../src/netlink';

/** One change request, as the fake received it. */
export type FakeRequest =
  | { readonly op: 'deleteLink'; readonly index: number; readonly name: string | undefined }
  | { readonly op: 'ensureLinkUp'; readonly index: number; readonly name: string | undefined }
  | { readonly op: 'ensureMtu'; readonly index: number; readonly name: string | undefined; readonly mtu: number }
  | { readonly op: 'ensureVxlan'; readonly spec: VxlanSpec }
  | { readonly op: 'ensureAddresses'; readonly index: number; readonly name: string | undefined; readonly want: readonly AddrSpec[] }
  | { readonly op: 'ensureAddresses6'; readonly index: number; readonly name: string | undefined; readonly want: readonly Addr6Spec[] }
  | { readonly op: 'ensureRoute'; readonly spec: RouteSpec }
  | { readonly op: 'ensureRoute6'; readonly spec: Route6Spec }
  | { readonly op: 'ensureUnreachableRoute6'; readonly spec: Unreachable6Spec }
  | { readonly op: 'deleteRoute6'; readonly key: Route6Key }
  | { readonly op: 'ensureUnreachableRoute'; readonly spec: UnreachableRouteSpec }
  | { readonly op: 'deleteRoute'; readonly key: RouteKey }
  | { readonly op: 'ensureNeighbor'; readonly spec: NeighborSpec }
  | { readonly op: 'deleteNeighbor'; readonly key: NeighborKey }
  | { readonly op: 'ensureFdb'; readonly spec: FdbSpec }
  | { readonly op: 'deleteFdb'; readonly spec: FdbSpec }
  | { readonly op: 'ensureNeighbor6'; readonly spec: Neighbor6Spec }
  | { readonly op: 'deleteNeighbor6'; readonly key: Neighbor6Key }
  | { readonly op: 'ensureFdb6'; readonly spec: Fdb6Spec }
  | { readonly op: 'deleteFdb6'; readonly spec: Fdb6Spec };

/** The default text of a request in `calls`, e.g. "ensureRoute 10.0.2.0/24 via 10.0.2.0 onlink oif 10". */
export function describeRequest(r: FakeRequest): string {
  switch (r.op) {
    case 'deleteLink':
    case 'ensureLinkUp':
      return `${r.op} ${r.name ?? r.index}`;
    case 'ensureMtu':
      return `ensureMtu ${r.name ?? r.index} ${r.mtu}`;
    case 'ensureVxlan':
      return `ensureVxlan ${r.spec.name}`;
    case 'ensureAddresses':
      return `ensureAddresses ${r.name ?? r.index} ${r.want.map((a) => `${formatIp(a.ip)}/${a.prefix}`).join(',')}`;
    case 'ensureRoute': {
      const s = r.spec;
      return `ensureRoute ${formatCidr(s.dst)}${s.gateway !== undefined ? ` via ${formatIp(s.gateway)}` : ''}${s.onlink ? ' onlink' : ''} oif ${s.oif}`;
    }
    case 'ensureUnreachableRoute':
      return `ensureUnreachableRoute ${formatCidr(r.spec.dst)} metric=${r.spec.metric}`;
    case 'ensureAddresses6':
      return `ensureAddresses6 ${r.name ?? r.index} ${r.want.map((a) => `${formatIp6(a.ip)}/${a.prefix}`).join(',')}`;
    case 'ensureRoute6': {
      const s = r.spec;
      return `ensureRoute6 ${formatCidr6(s.dst)}${s.gateway !== undefined ? ` via ${formatIp6(s.gateway)}` : ''}${s.onlink ? ' onlink' : ''} oif ${s.oif}`;
    }
    case 'ensureUnreachableRoute6':
      return `ensureUnreachableRoute6 ${formatCidr6(r.spec.dst)} metric=${r.spec.metric}`;
    case 'deleteRoute6':
      return `deleteRoute6 ${formatCidr6(r.key.dst)}${r.key.metric ? ` metric=${r.key.metric}` : ''}`;
    case 'deleteRoute':
      return `deleteRoute ${formatCidr(r.key.dst)}${r.key.metric ? ` metric=${r.key.metric}` : ''}`;
    case 'ensureNeighbor':
      return `ensureNeighbor ${formatIp(r.spec.ip)} ${r.spec.mac}`;
    case 'deleteNeighbor':
      return `deleteNeighbor ${formatIp(r.key.ip)}`;
    case 'ensureFdb':
      return `ensureFdb ${r.spec.mac} ${formatIp(r.spec.dst)}`;
    case 'deleteFdb':
      return `deleteFdb ${r.spec.mac} ${formatIp(r.spec.dst)}`;
    case 'ensureNeighbor6':
      return `ensureNeighbor6 ${formatIp6(r.spec.ip)} ${r.spec.mac}`;
    case 'deleteNeighbor6':
      return `deleteNeighbor6 ${formatIp6(r.key.ip)}`;
    case 'ensureFdb6':
      return `ensureFdb6 ${r.spec.mac} ${formatIp6(r.spec.dst)}`;
    case 'deleteFdb6':
      return `deleteFdb6 ${r.spec.mac} ${formatIp6(r.spec.dst)}`;
  }
}

const SCOPES = { universe: 0, link: 253, host: 254 } as const;
const sameCidr = (a: Cidr, b: Cidr): boolean => a.ip >>> 0 === b.ip >>> 0 && a.prefix === b.prefix;
const sameCidr6 = (a: Cidr6, b: Cidr6): boolean => a.ip === b.ip && a.prefix === b.prefix;

/** A kernel error as the facade reports it (the message names the errno). */
function kernelError(errno: string, what: string): Error {
  return Object.assign(new Error(`${what}: ${errno}`), { errno });
}

export interface FakeNetlinkOptions {
  /** How a request is written into `calls` (default describeRequest). */
  readonly describe?: (r: FakeRequest) => string;
}

export class FakeNetlink implements Netlink {
  /** Change requests, in order, one per object (see describeRequest). */
  calls: string[] = [];
  links: LinkInfo[] = [];
  addrs: Array<AddrSpec & { index: number }> = [];
  routes: RouteInfo[] = [];
  /** Global IPv6 addresses. */
  addrs6: Array<Addr6Spec & { index: number }> = [];
  routes6: Route6Info[] = [];
  neigh: NeighborSpec[] = [];
  fdb: FdbSpec[] = [];
  neigh6: Neighbor6Spec[] = [];
  fdb6: Fdb6Spec[] = [];
  /** Every spec ensureVxlan was called with. */
  vxlanSpecs: VxlanSpec[] = [];
  /** close() calls (the fake stays usable: tests hand the same instance to every open). */
  closed = 0;
  /** A request whose recorded text starts with this fails (its batch item gets the error). */
  failOn: string | undefined;
  /** Called with each recorded request before it is carried out (e.g. to abort mid-start; a throw fails it). */
  onCall: ((call: string) => void) | undefined;

  private nextIndex = 10;
  private readonly vxlanOf = new Map<number, VxlanSpec>();
  private readonly watchers = new Set<{ interested: (index: number) => boolean; onChange: (ch: KernelChange) => void }>();
  private readonly describe: (r: FakeRequest) => string;

  constructor(opts: FakeNetlinkOptions = {}) {
    this.describe = opts.describe ?? describeRequest;
  }

  // ---------------------------------------------------------------------------
  // Test-side setup: state "someone else" made (not recorded; notified like the kernel would).

  addLink(name: string, kind: string | undefined, mac?: string, opts: { index?: number; up?: boolean; mtu?: number; vxlan?: { vni: number; port: number; ipv6?: boolean } } = {}): LinkInfo {
    const l: LinkInfo = { index: opts.index ?? this.nextIndex++, name, mtu: opts.mtu ?? 1500, up: opts.up ?? true, kind, mac, ...(opts.vxlan ? { vxlan: opts.vxlan } : {}) };
    this.links.push(l);
    this.emit({ kind: 'link', op: 'new', index: l.index });
    return l;
  }

  /** A route as the kernel would list it (defaults: main table, Rudder protocol, unicast, metric 0). */
  addRoute(r: Partial<RouteInfo> & { dst: RouteInfo['dst'] }): RouteInfo {
    const route: RouteInfo = { table: TABLE_MAIN, oif: undefined, gateway: undefined, onlink: false, scope: 0, protocol: RTPROT_RUDDER, type: RTN_UNICAST, metric: 0, prefsrc: undefined, ...r };
    this.routes.push(route);
    this.emit({ kind: 'route', op: 'new', route });
    return route;
  }

  /** An IPv6 route as the kernel would list it (defaults: main table, Rudder protocol, unicast, metric 1024). */
  addRoute6(r: Partial<Route6Info> & { dst: Route6Info['dst'] }): Route6Info {
    const route: Route6Info = { table: TABLE_MAIN, oif: undefined, gateway: undefined, onlink: false, protocol: RTPROT_RUDDER, type: RTN_UNICAST, metric: IPV6_DEFAULT_METRIC, prefsrc: undefined, ...r };
    this.routes6.push(route);
    this.emit({ kind: 'route6', op: 'new', route });
    return route;
  }

  /** Removes IPv6 routes as `ip -6 route del` would. */
  removeRoutes6(match: (r: Route6Info) => boolean): void {
    for (const r of this.routes6.filter(match)) this.dropRoute6(r);
  }

  /** Removes a link and everything on it, as `ip link del` would. */
  removeLink(index: number): void {
    this.dropLink(index);
  }

  /** Removes routes as `ip route del` would. */
  removeRoutes(match: (r: RouteInfo) => boolean): void {
    for (const r of this.routes.filter(match)) this.dropRoute(r);
  }

  link(name: string): LinkInfo | undefined {
    return this.links.find((l) => l.name === name);
  }

  // ---------------------------------------------------------------------------
  // Links

  async listLinks(): Promise<LinkInfo[]> {
    return this.links.map((l) => ({ ...l }));
  }

  async linkByName(name: string): Promise<LinkInfo | null> {
    const l = this.link(name);
    return l === undefined ? null : { ...l };
  }

  async linkByIndex(index: number): Promise<LinkInfo | null> {
    const l = this.links.find((x) => x.index === index);
    return l === undefined ? null : { ...l };
  }

  async defaultRouteInterface(): Promise<DefaultRouteIface | null> {
    const defaults = this.routes.filter((r) => r.table === TABLE_MAIN && r.dst.prefix === 0 && r.type === RTN_UNICAST && r.oif !== undefined).sort((a, b) => a.metric - b.metric);
    for (const r of defaults) {
      const link = this.links.find((l) => l.index === r.oif);
      const a = this.addrs.find((x) => x.index === r.oif);
      if (link === undefined || a === undefined) continue;
      return { link: { ...link }, address: a.ip, prefix: a.prefix, gateway: r.gateway, metric: r.metric };
    }
    return null;
  }

  async deleteLink(index: number): Promise<boolean> {
    const l = this.links.find((x) => x.index === index);
    this.rec({ op: 'deleteLink', index, name: l?.name });
    if (l === undefined) return false;
    this.dropLink(index);
    return true;
  }

  async ensureLinkUp(index: number): Promise<EnsureResult> {
    const l = this.mustLink(index, 'set link up');
    this.rec({ op: 'ensureLinkUp', index, name: l.name });
    if (l.up) return { changed: false };
    this.setLink(index, { up: true });
    return { changed: true };
  }

  async ensureMtu(index: number, mtu: number): Promise<EnsureResult> {
    const l = this.mustLink(index, `set mtu ${mtu}`);
    this.rec({ op: 'ensureMtu', index, name: l.name, mtu });
    if (l.mtu === mtu) return { changed: false };
    this.setLink(index, { mtu });
    return { changed: true };
  }

  async ensureVxlan(spec: VxlanSpec): Promise<LinkInfo & EnsureResult> {
    this.vxlanSpecs.push(spec);
    this.rec({ op: 'ensureVxlan', spec });
    const old = this.link(spec.name);
    if (old !== undefined && old.kind === 'vxlan' && sameVxlan(this.vxlanOf.get(old.index), old, spec)) return { ...old, changed: false };
    if (old !== undefined) this.dropLink(old.index);
    // Like the kernel: one VNI on one UDP port belongs to one device.
    // Like the kernel: one VNI on one UDP port belongs to one device per family (an IPv6 VTEP beside an IPv4 one is fine).
    const ipv6 = spec.local6 !== undefined || spec.group6 !== undefined;
    if (this.links.some((x) => x.vxlan?.vni === spec.vni && x.vxlan.port === spec.port && (x.vxlan.ipv6 ?? false) === ipv6)) throw kernelError('EEXIST', `create vxlan ${spec.name}`);
    const l = this.addLink(spec.name, 'vxlan', spec.mac, { up: false, vxlan: { vni: spec.vni, port: spec.port, ...(ipv6 ? { ipv6 } : {}) } });
    this.vxlanOf.set(l.index, spec);
    return { ...l, changed: true };
  }

  // ---------------------------------------------------------------------------
  // Addresses

  async listAddresses(index?: number): Promise<Array<AddrSpec & { readonly index: number }>> {
    return this.addrs.filter((a) => index === undefined || a.index === index).map((a) => ({ ...a }));
  }

  async ensureAddresses(index: number, want: readonly AddrSpec[]): Promise<AddressesResult> {
    const l = this.mustLink(index, 'set addresses');
    this.rec({ op: 'ensureAddresses', index, name: l.name, want });
    const key = (a: AddrSpec): string => `${a.ip >>> 0}/${a.prefix}`;
    const have = this.addrs.filter((a) => a.index === index);
    const wanted = new Set(want.map(key));
    const had = new Set(have.map(key));
    const removed = have.filter((a) => !wanted.has(key(a))).map(({ ip, prefix }) => ({ ip, prefix }));
    const added = want.filter((a) => !had.has(key(a)));
    this.addrs = [...this.addrs.filter((a) => a.index !== index || wanted.has(key(a))), ...added.map((a) => ({ ip: a.ip, prefix: a.prefix, index }))];
    for (const _ of removed) this.emit({ kind: 'addr', op: 'del', index });
    for (const _ of added) this.emit({ kind: 'addr', op: 'new', index });
    return { changed: removed.length + added.length > 0, added, removed };
  }

  async listAddresses6(index?: number): Promise<Array<Addr6Spec & { readonly index: number }>> {
    return this.addrs6.filter((a) => index === undefined || a.index === index).map((a) => ({ ...a }));
  }

  async ensureAddresses6(index: number, want: readonly Addr6Spec[]): Promise<Addresses6Result> {
    const l = this.mustLink(index, 'set IPv6 addresses');
    this.rec({ op: 'ensureAddresses6', index, name: l.name, want });
    const key = (a: Addr6Spec): string => `${a.ip}/${a.prefix}`;
    const have = this.addrs6.filter((a) => a.index === index);
    const wanted = new Set(want.map(key));
    const had = new Set(have.map(key));
    const removed = have.filter((a) => !wanted.has(key(a))).map(({ ip, prefix }) => ({ ip, prefix }));
    const added = want.filter((a) => !had.has(key(a)));
    this.addrs6 = [...this.addrs6.filter((a) => a.index !== index || wanted.has(key(a))), ...added.map((a) => ({ ip: a.ip, prefix: a.prefix, index }))];
    for (const _ of removed) this.emit({ kind: 'addr', op: 'del', index });
    for (const _ of added) this.emit({ kind: 'addr', op: 'new', index });
    return { changed: removed.length + added.length > 0, added, removed };
  }

  // ---------------------------------------------------------------------------
  // Routes

  async listRoutes(f: RouteFilter = {}): Promise<RouteInfo[]> {
    const table = f.table ?? TABLE_MAIN;
    return this.routes.filter((r) => (table === 'all' || r.table === table) && (f.protocol === undefined || r.protocol === f.protocol) && (f.oif === undefined || r.oif === f.oif)).map((r) => ({ ...r }));
  }

  async ensureRoutes(specs: readonly RouteSpec[], opts: EnsureOptions = {}): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'ensureRoute', spec });
      const n = {
        dst: { ip: spec.dst.ip >>> 0, prefix: spec.dst.prefix },
        table: spec.table ?? TABLE_MAIN,
        oif: spec.oif,
        gateway: spec.gateway === undefined ? undefined : spec.gateway >>> 0,
        onlink: spec.onlink ?? false,
        scope: SCOPES[spec.scope ?? (spec.gateway === undefined ? 'link' : 'universe')],
        protocol: spec.protocol ?? RTPROT_RUDDER,
        metric: spec.metric ?? 0,
      };
      if (!this.links.some((l) => l.index === n.oif)) throw kernelError('ENODEV', `replace route ${formatCidr(n.dst)}`);
      const toDst = this.routes.filter((r) => r.table === n.table && sameCidr(r.dst, n.dst) && r.type === RTN_UNICAST);
      const matches = (r: RouteInfo): boolean =>
        r.metric === n.metric && r.oif === n.oif && r.gateway === n.gateway && r.onlink === n.onlink && r.scope === n.scope && r.protocol === n.protocol;
      let changed = false;
      if (opts.dump === false || !toDst.some(matches)) {
        this.replaceRoute({ ...n, type: RTN_UNICAST, prefsrc: undefined });
        changed = true;
      }
      if (opts.dump !== false) {
        // REPLACE only overwrites the same metric: a copy of ours at another metric is stale.
        for (const r of toDst) {
          if (r.protocol === n.protocol && r.metric !== n.metric && this.routes.includes(r)) {
            this.dropRoute(r);
            changed = true;
          }
        }
      }
      return changed;
    });
  }

  async ensureUnreachableRoute(spec: UnreachableRouteSpec): Promise<EnsureResult> {
    this.rec({ op: 'ensureUnreachableRoute', spec });
    const table = spec.table ?? TABLE_MAIN;
    const protocol = spec.protocol ?? RTPROT_RUDDER;
    const there = this.routes.some((r) => r.table === table && sameCidr(r.dst, spec.dst) && r.type === RTN_UNREACHABLE && r.metric === spec.metric && r.protocol === protocol);
    if (there) return { changed: false };
    this.replaceRoute({ dst: spec.dst, table, oif: undefined, gateway: undefined, onlink: false, scope: 0, protocol, type: RTN_UNREACHABLE, metric: spec.metric, prefsrc: undefined });
    return { changed: true };
  }

  /** As the kernel: the first route with that dst and table; metric, oif and gateway only when given. */
  async deleteRoutes(keys: readonly RouteKey[]): Promise<BatchResult[]> {
    return this.batch(keys, (key) => {
      this.rec({ op: 'deleteRoute', key });
      const r = this.routes.find(
        (x) =>
          sameCidr(x.dst, key.dst) &&
          x.table === (key.table ?? TABLE_MAIN) &&
          (!key.metric || x.metric === key.metric) &&
          (key.oif === undefined || x.oif === key.oif) &&
          (key.gateway === undefined || x.gateway === key.gateway >>> 0),
      );
      if (r === undefined) return false;
      this.dropRoute(r);
      return true;
    });
  }

  async listRoutes6(f: RouteFilter = {}): Promise<Route6Info[]> {
    const table = f.table ?? TABLE_MAIN;
    return this.routes6.filter((r) => (table === 'all' || r.table === table) && (f.protocol === undefined || r.protocol === f.protocol) && (f.oif === undefined || r.oif === f.oif)).map((r) => ({ ...r }));
  }

  async ensureRoutes6(specs: readonly Route6Spec[], opts: EnsureOptions = {}): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'ensureRoute6', spec });
      const n = {
        dst: spec.dst,
        table: spec.table ?? TABLE_MAIN,
        oif: spec.oif,
        gateway: spec.gateway,
        onlink: spec.onlink ?? false,
        protocol: spec.protocol ?? RTPROT_RUDDER,
        metric: spec.metric || IPV6_DEFAULT_METRIC,
      };
      if (!this.links.some((l) => l.index === n.oif)) throw kernelError('ENODEV', `replace route ${formatCidr6(n.dst)}`);
      const toDst = this.routes6.filter((r) => r.table === n.table && sameCidr6(r.dst, n.dst) && r.type === RTN_UNICAST);
      const matches = (r: Route6Info): boolean => r.metric === n.metric && r.oif === n.oif && r.gateway === n.gateway && r.onlink === n.onlink && r.protocol === n.protocol;
      let changed = false;
      if (opts.dump === false || !toDst.some(matches)) {
        this.replaceRoute6({ ...n, type: RTN_UNICAST, prefsrc: undefined });
        changed = true;
      }
      if (opts.dump !== false) {
        for (const r of toDst) {
          if (r.protocol === n.protocol && r.metric !== n.metric && this.routes6.includes(r)) {
            this.dropRoute6(r);
            changed = true;
          }
        }
      }
      return changed;
    });
  }

  async ensureUnreachableRoute6(spec: Unreachable6Spec): Promise<EnsureResult> {
    this.rec({ op: 'ensureUnreachableRoute6', spec });
    const table = spec.table ?? TABLE_MAIN;
    const protocol = spec.protocol ?? RTPROT_RUDDER;
    const metric = spec.metric || IPV6_DEFAULT_METRIC;
    const there = this.routes6.some((r) => r.table === table && sameCidr6(r.dst, spec.dst) && r.type === RTN_UNREACHABLE && r.metric === metric && r.protocol === protocol);
    if (there) return { changed: false };
    this.replaceRoute6({ dst: spec.dst, table, oif: undefined, gateway: undefined, onlink: false, protocol, type: RTN_UNREACHABLE, metric, prefsrc: undefined });
    return { changed: true };
  }

  /** As the kernel: the first IPv6 route with that dst and table; metric, oif and gateway only when given. */
  async deleteRoutes6(keys: readonly Route6Key[]): Promise<BatchResult[]> {
    return this.batch(keys, (key) => {
      this.rec({ op: 'deleteRoute6', key });
      const r = this.routes6.find(
        (x) =>
          sameCidr6(x.dst, key.dst) &&
          x.table === (key.table ?? TABLE_MAIN) &&
          (!key.metric || x.metric === key.metric) &&
          (key.oif === undefined || x.oif === key.oif) &&
          (key.gateway === undefined || x.gateway === key.gateway),
      );
      if (r === undefined) return false;
      this.dropRoute6(r);
      return true;
    });
  }

  // ---------------------------------------------------------------------------
  // Neighbors and FDB

  async listNeighbors(index: number): Promise<NeighborSpec[]> {
    return this.neigh.filter((n) => n.index === index).map((n) => ({ ...n }));
  }

  async ensureNeighbors(specs: readonly NeighborSpec[], opts: EnsureOptions = {}): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'ensureNeighbor', spec });
      this.mustLink(spec.index, `replace neighbor ${formatIp(spec.ip)}`);
      const mac = spec.mac.toLowerCase();
      const ip = spec.ip >>> 0;
      if (opts.dump !== false && this.neigh.some((n) => n.index === spec.index && n.ip === ip && n.mac === mac)) return false;
      this.neigh = [...this.neigh.filter((n) => !(n.index === spec.index && n.ip === ip)), { index: spec.index, ip, mac }];
      this.emit({ kind: 'neigh', op: 'new', index: spec.index, ip, mac });
      return true;
    });
  }

  async deleteNeighbors(keys: readonly NeighborKey[]): Promise<BatchResult[]> {
    return this.batch(keys, (key) => {
      this.rec({ op: 'deleteNeighbor', key });
      const n = this.neigh.find((x) => x.index === key.index && x.ip === key.ip >>> 0);
      if (n === undefined) return false;
      this.neigh = this.neigh.filter((x) => x !== n);
      this.emit({ kind: 'neigh', op: 'del', index: n.index, ip: n.ip, mac: n.mac });
      return true;
    });
  }

  async listFdb(index: number): Promise<FdbSpec[]> {
    return this.fdb.filter((f) => f.index === index).map((f) => ({ ...f }));
  }

  /** One remote per MAC: the entry is replaced, other remotes of that MAC go. */
  async ensureFdbs(specs: readonly FdbSpec[], opts: EnsureOptions = {}): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'ensureFdb', spec });
      this.mustLink(spec.index, `replace fdb ${spec.mac}`);
      const mac = spec.mac.toLowerCase();
      const dst = spec.dst >>> 0;
      const sameMac = this.fdb.filter((f) => f.index === spec.index && f.mac === mac);
      if (opts.dump !== false && sameMac.length === 1 && sameMac[0]?.dst === dst) return false;
      this.fdb = [...this.fdb.filter((f) => !sameMac.includes(f)), { index: spec.index, mac, dst }];
      for (const f of sameMac) if (f.dst !== dst) this.emit({ kind: 'fdb', op: 'del', index: f.index, mac: f.mac, dst: f.dst });
      this.emit({ kind: 'fdb', op: 'new', index: spec.index, mac, dst });
      return true;
    });
  }

  async deleteFdbs(specs: readonly FdbSpec[]): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'deleteFdb', spec });
      const f = this.fdb.find((x) => x.index === spec.index && x.mac === spec.mac.toLowerCase() && x.dst === spec.dst >>> 0);
      if (f === undefined) return false;
      this.fdb = this.fdb.filter((x) => x !== f);
      this.emit({ kind: 'fdb', op: 'del', index: f.index, mac: f.mac, dst: f.dst });
      return true;
    });
  }

  async listNeighbors6(index: number): Promise<Neighbor6Spec[]> {
    return this.neigh6.filter((n) => n.index === index).map((n) => ({ ...n }));
  }

  async ensureNeighbors6(specs: readonly Neighbor6Spec[], opts: EnsureOptions = {}): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'ensureNeighbor6', spec });
      this.mustLink(spec.index, `replace neighbor ${formatIp6(spec.ip)}`);
      const mac = spec.mac.toLowerCase();
      const ip = spec.ip;
      if (opts.dump !== false && this.neigh6.some((n) => n.index === spec.index && n.ip === ip && n.mac === mac)) return false;
      this.neigh6 = [...this.neigh6.filter((n) => !(n.index === spec.index && n.ip === ip)), { index: spec.index, ip, mac }];
      this.emit({ kind: 'neigh6', op: 'new', index: spec.index, ip, mac });
      return true;
    });
  }

  async deleteNeighbors6(keys: readonly Neighbor6Key[]): Promise<BatchResult[]> {
    return this.batch(keys, (key) => {
      this.rec({ op: 'deleteNeighbor6', key });
      const n = this.neigh6.find((x) => x.index === key.index && x.ip === key.ip);
      if (n === undefined) return false;
      this.neigh6 = this.neigh6.filter((x) => x !== n);
      this.emit({ kind: 'neigh6', op: 'del', index: n.index, ip: n.ip, mac: n.mac });
      return true;
    });
  }

  async listFdb6(index: number): Promise<Fdb6Spec[]> {
    return this.fdb6.filter((f) => f.index === index).map((f) => ({ ...f }));
  }

  async ensureFdbs6(specs: readonly Fdb6Spec[], opts: EnsureOptions = {}): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'ensureFdb6', spec });
      this.mustLink(spec.index, `replace fdb ${spec.mac}`);
      const mac = spec.mac.toLowerCase();
      const dst = spec.dst;
      const sameMac = this.fdb6.filter((f) => f.index === spec.index && f.mac === mac);
      if (opts.dump !== false && sameMac.length === 1 && sameMac[0]?.dst === dst) return false;
      this.fdb6 = [...this.fdb6.filter((f) => !sameMac.includes(f)), { index: spec.index, mac, dst }];
      for (const f of sameMac) if (f.dst !== dst) this.emit({ kind: 'fdb6', op: 'del', index: f.index, mac: f.mac, dst: f.dst });
      this.emit({ kind: 'fdb6', op: 'new', index: spec.index, mac, dst });
      return true;
    });
  }

  async deleteFdbs6(specs: readonly Fdb6Spec[]): Promise<BatchResult[]> {
    return this.batch(specs, (spec) => {
      this.rec({ op: 'deleteFdb6', spec });
      const f = this.fdb6.find((x) => x.index === spec.index && x.mac === spec.mac.toLowerCase() && x.dst === spec.dst);
      if (f === undefined) return false;
      this.fdb6 = this.fdb6.filter((x) => x !== f);
      this.emit({ kind: 'fdb6', op: 'del', index: f.index, mac: f.mac, dst: f.dst });
      return true;
    });
  }

  // ---------------------------------------------------------------------------
  // Notifications

  watchKernel(interested: (index: number) => boolean, onChange: (ch: KernelChange) => void): () => void {
    const w = { interested, onChange };
    this.watchers.add(w);
    return () => void this.watchers.delete(w);
  }

  /** Subscribers now. */
  get watching(): number {
    return this.watchers.size;
  }

  close(): void {
    this.closed++;
  }

  // ---------------------------------------------------------------------------

  /** Delivered after the current call, as a notification socket would. */
  private emit(ch: KernelChange): void {
    if (this.watchers.size === 0) return;
    queueMicrotask(() => {
      for (const w of this.watchers) {
        const wanted =
          ch.kind === 'lost' ||
          (ch.kind === 'route' || ch.kind === 'route6' ? ch.route.protocol === RTPROT_RUDDER : w.interested(ch.index));
        if (wanted) w.onChange(ch);
      }
    });
  }

  private rec(r: FakeRequest): void {
    const call = this.describe(r);
    this.calls.push(call);
    this.onCall?.(call);
    if (this.failOn !== undefined && call.startsWith(this.failOn)) throw new Error(`injected failure: ${call}`);
  }

  private async batch<T>(items: readonly T[], one: (item: T) => boolean): Promise<BatchResult[]> {
    return items.map((it) => {
      try {
        return { changed: one(it) };
      } catch (e) {
        return { changed: false, error: e instanceof Error ? e : new Error(String(e)) };
      }
    });
  }

  private mustLink(index: number, what: string): LinkInfo {
    const l = this.links.find((x) => x.index === index);
    if (l === undefined) throw kernelError('ENODEV', what);
    return l;
  }

  private setLink(index: number, patch: Partial<LinkInfo>): void {
    this.links = this.links.map((l) => (l.index === index ? { ...l, ...patch } : l));
    this.emit({ kind: 'link', op: 'new', index });
  }

  /** NLM_F_REPLACE: the route with the same dst/table/metric is overwritten. */
  private replaceRoute(r: RouteInfo): void {
    const old = this.routes.find((x) => x.table === r.table && sameCidr(x.dst, r.dst) && x.metric === r.metric);
    if (old !== undefined) this.routes = this.routes.filter((x) => x !== old);
    this.routes.push(r);
    this.emit({ kind: 'route', op: 'new', route: r });
  }

  private dropRoute(r: RouteInfo): void {
    this.routes = this.routes.filter((x) => x !== r);
    this.emit({ kind: 'route', op: 'del', route: r });
  }

  private replaceRoute6(r: Route6Info): void {
    const old = this.routes6.find((x) => x.table === r.table && sameCidr6(x.dst, r.dst) && x.metric === r.metric);
    if (old !== undefined) this.routes6 = this.routes6.filter((x) => x !== old);
    this.routes6.push(r);
    this.emit({ kind: 'route6', op: 'new', route: r });
  }

  private dropRoute6(r: Route6Info): void {
    this.routes6 = this.routes6.filter((x) => x !== r);
    this.emit({ kind: 'route6', op: 'del', route: r });
  }

  private dropLink(index: number): void {
    for (const r of this.routes.filter((x) => x.oif === index)) this.dropRoute(r);
    for (const r of this.routes6.filter((x) => x.oif === index)) this.dropRoute6(r);
    this.addrs6 = this.addrs6.filter((a) => a.index !== index);
    this.links = this.links.filter((l) => l.index !== index);
    this.neigh = this.neigh.filter((n) => n.index !== index);
    this.fdb = this.fdb.filter((f) => f.index !== index);
    this.neigh6 = this.neigh6.filter((n) => n.index !== index);
    this.fdb6 = this.fdb6.filter((f) => f.index !== index);
    this.addrs = this.addrs.filter((a) => a.index !== index);
    this.vxlanOf.delete(index);
    this.emit({ kind: 'link', op: 'del', index });
  }
}

/** Whether the VXLAN link `l` (made from `a`; a link a test added has no spec: its MAC is all we know) is `b`. */
function sameVxlan(a: VxlanSpec | undefined, l: LinkInfo, b: VxlanSpec): boolean {
  if (a === undefined) return l.mac === b.mac;
  return (
    a.vni === b.vni &&
    a.port === b.port &&
    (a.local ?? 0) === (b.local ?? 0) &&
    (a.local6 ?? 0n) === (b.local6 ?? 0n) &&
    (a.group6 ?? 0n) === (b.group6 ?? 0n) &&
    a.underlay === b.underlay &&
    a.mac === b.mac &&
    (a.learning ?? false) === (b.learning ?? false)
  );
}

// The whole facade, checked at compile time.
const _complete: Netlink = new FakeNetlink();
void _complete;
