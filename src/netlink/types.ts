/**
 * The kernel-state seam: what backends need from rtnetlink, as "ensure"
 * operations. Each ensure leaves matching state alone, replaces wrong state
 * and removes stale state, and reports whether it changed anything (so
 * callers can log real changes only and tests can prove idempotence).
 *
 * Addresses are IPv4 uint32 numbers as everywhere else in Rudder; MACs are
 * lower-case `aa:bb:cc:dd:ee:ff` strings (what BackendData carries). IPv6
 * has its own types and methods (the `6` suffix: Route6Spec, ensureRoutes6,
 * ...) over the bigint addresses of ip/ipv6.ts, so the IPv4 API and its
 * callers stay as they are; each pair of types is one generic over the
 * address (`RouteSpecOf<A>`, `FdbSpecOf<A>`, ...) with both names kept.
 */
import type { PrefixOf } from '../ip/family';

/**
 * The route protocol (rtm_protocol) stamped on every route Rudder makes.
 * The kernel never interprets values ≥ RTPROT_STATIC; a value of our own lets
 * a restarted daemon find, and remove, routes an earlier run left behind
 * without touching anybody else's. 0x52 ('R') is unassigned in rt_protos.
 */
export const RTPROT_RUDDER = 0x52;
/** rtm_type of a route: an ordinary one, and one that refuses ("network unreachable"). */
export const RTN_UNICAST = 1;
export const RTN_UNREACHABLE = 7;

/** The main routing table (RT_TABLE_MAIN). */
export const TABLE_MAIN = 254;

/**
 * The metric of an IPv6 route that names none: the kernel stores a request
 * without RTA_PRIORITY (or with 0) at IP6_RT_PRIO_USER, so an IPv6 route
 * never has metric 0. Route6Spec defaults to it, so what is asked is what
 * the kernel lists.
 */
export const IPV6_DEFAULT_METRIC = 1024;

export interface LinkInfo {
  readonly index: number;
  readonly name: string;
  readonly mtu: number;
  /** Administratively up (IFF_UP). */
  readonly up: boolean;
  /** IFLA_INFO_KIND (`vxlan`, `veth`, `tun`, ...); undefined for plain devices. */
  readonly kind: string | undefined;
  /** Hardware address; undefined for devices without one (TUN). */
  readonly mac: string | undefined;
  /**
   * For a VXLAN device: the VNI and UDP port it holds, and whether it is an
   * IPv6 VTEP (no two devices of one family may hold the same VNI and port).
   */
  readonly vxlan?: { readonly vni: number; readonly port: number; readonly ipv6?: boolean };
}

/**
 * An interface address: the host's own address plus the prefix length. IPv6:
 * global scope only (link-local addresses are the kernel's).
 */
export interface AddrSpecOf<A extends number | bigint> {
  readonly ip: A;
  readonly prefix: number;
}
export type AddrSpec = AddrSpecOf<number>;
export type Addr6Spec = AddrSpecOf<bigint>;

export type RouteScope = 'universe' | 'link' | 'host';

/** A route request of either family (`A`: number for IPv4, bigint for IPv6). */
export interface RouteSpecOf<A extends number | bigint> {
  readonly dst: PrefixOf<A>;
  readonly oif: number;
  readonly gateway?: A;
  /** Gateway need not be on a connected subnet (vxlan: via the peer's overlay address). */
  readonly onlink?: boolean;
  /** IPv4 only (see Route6Spec). Default: 'universe' with a gateway, 'link' without. */
  readonly scope?: RouteScope;
  /** Default RTPROT_RUDDER. */
  readonly protocol?: number;
  /** Route priority; default 0 (IPv6: IPV6_DEFAULT_METRIC). Part of the kernel's route key. */
  readonly metric?: number;
  /** Default TABLE_MAIN. */
  readonly table?: number;
}
export type RouteSpec = RouteSpecOf<number>;
/** An IPv6 route. No scope: the kernel keeps every IPv6 route at scope universe. */
export type Route6Spec = Omit<RouteSpecOf<bigint>, 'scope'>;

/** A kernel route of either family. */
export interface RouteInfoOf<A extends number | bigint> {
  readonly dst: PrefixOf<A>;
  readonly table: number;
  /** An `unreachable` IPv6 route lists the loopback device here. */
  readonly oif: number | undefined;
  readonly gateway: A | undefined;
  readonly onlink: boolean;
  /** rtm_scope; IPv4 only (see Route6Spec). */
  readonly scope?: number;
  readonly protocol: number;
  /** rtm_type (1 = unicast). */
  readonly type: number;
  readonly metric: number;
  readonly prefsrc: A | undefined;
}
export interface RouteInfo extends RouteInfoOf<number> {
  readonly scope: number;
}
export type Route6Info = Omit<RouteInfoOf<bigint>, 'scope'>;

export interface RouteFilter {
  readonly oif?: number;
  readonly protocol?: number;
  /** Default TABLE_MAIN; `'all'` for every table. */
  readonly table?: number | 'all';
}

/**
 * An `unreachable` route: traffic to `dst` is refused ("network unreachable")
 * instead of routed. `A`: number (IPv4) or bigint (IPv6).
 */
export interface UnreachableRouteSpecOf<A extends number | bigint> {
  readonly dst: PrefixOf<A>;
  /** Part of the kernel's route key: pick one no other route to `dst` uses (IPv6: 0 is IPV6_DEFAULT_METRIC). */
  readonly metric: number;
  /** Default RTPROT_RUDDER. */
  readonly protocol?: number;
  /** Default TABLE_MAIN. */
  readonly table?: number;
}
export type UnreachableRouteSpec = UnreachableRouteSpecOf<number>;
export type Unreachable6Spec = UnreachableRouteSpecOf<bigint>;

/**
 * What `deleteRoutes` (`deleteRoutes6`) needs to name one route: the kernel's
 * key plus oif/gateway to be precise. Without a metric the kernel deletes the
 * first route to dst whatever its metric.
 */
export interface RouteKeyOf<A extends number | bigint> {
  readonly dst: PrefixOf<A>;
  readonly table?: number;
  readonly metric?: number;
  readonly oif?: number;
  readonly gateway?: A;
}
export type RouteKey = RouteKeyOf<number>;
export type Route6Key = RouteKeyOf<bigint>;

/** The IPv4 default route's interface: the underlay Rudder uses unless -iface says otherwise. */
export interface DefaultRouteIface {
  readonly link: LinkInfo;
  /** The interface address used for the route (prefsrc, else the primary address on the gateway's subnet). */
  readonly address: number;
  readonly prefix: number;
  readonly gateway: number | undefined;
  readonly metric: number;
}

/** A permanent neighbor entry ip → mac on a link: ARP (`A` number) or NDP (`A` bigint). */
export interface NeighborSpecOf<A extends number | bigint> {
  readonly index: number;
  readonly ip: A;
  readonly mac: string;
}
export type NeighborSpec = NeighborSpecOf<number>;
export type Neighbor6Spec = NeighborSpecOf<bigint>;

export interface NeighborKeyOf<A extends number | bigint> {
  readonly index: number;
  readonly ip: A;
}
export type NeighborKey = NeighborKeyOf<number>;
export type Neighbor6Key = NeighborKeyOf<bigint>;

/** An FDB entry on a VXLAN device: mac → remote VTEP underlay address (IPv4, or IPv6 on an IPv6 device). */
export interface FdbSpecOf<A extends number | bigint> {
  readonly index: number;
  readonly mac: string;
  readonly dst: A;
}
export type FdbSpec = FdbSpecOf<number>;
export type Fdb6Spec = FdbSpecOf<bigint>;

export interface VxlanSpec {
  readonly name: string;
  readonly vni: number;
  /** UDP destination port (8472 for Rudder/flannel, 4789 IANA). */
  readonly port: number;
  /** Local underlay address for the VTEP; 0/undefined lets the kernel choose. */
  readonly local?: number;
  /**
   * Local IPv6 underlay address (IFLA_VXLAN_LOCAL6): the device is an IPv6
   * VTEP (its FDB remotes are IPv6). Excludes `local`.
   */
  readonly local6?: bigint;
  /** IPv6 multicast group or default remote (IFLA_VXLAN_GROUP6); Rudder programs remotes per peer and sets none. */
  readonly group6?: bigint;
  /** Underlay device index the VTEP is bound to. */
  readonly underlay?: number;
  /** Fixed VTEP MAC, so peers' FDB entries survive a restart. */
  readonly mac?: string;
  /** Default false: peers are programmed explicitly, never learnt. */
  readonly learning?: boolean;
}

/** Result of an ensure: whether the kernel state had to change. */
export interface EnsureResult {
  readonly changed: boolean;
}

/** One item of a batch operation: whether it changed the kernel, or why it failed. */
export interface BatchResult {
  readonly changed: boolean;
  readonly error?: Error;
}

/** How a batch ensure learns what the kernel holds. */
export interface EnsureOptions {
  /**
   * Default true: one dump of the table, then each item is written only if
   * the kernel does not hold it already (changed reports real changes) and a
   * stale copy is removed (a Rudder route to the same dst at another metric;
   * another remote of the same FDB MAC).
   *
   * false: every item is written without a read (NLM_F_CREATE|NLM_F_REPLACE,
   * idempotent on the kernel's key), for callers that know what the kernel
   * holds: a plan made from a dump, or a backend applying a lease event to
   * state it programmed itself. changed is then always true, and stale copies
   * are left to the caller's reconcile.
   */
  readonly dump?: boolean;
}

/** One kernel change notification (see watchKernel). */
export type KernelChange =
  | { readonly kind: 'route'; readonly op: 'new' | 'del'; readonly route: RouteInfo }
  | { readonly kind: 'route6'; readonly op: 'new' | 'del'; readonly route: Route6Info }
  | { readonly kind: 'link' | 'addr'; readonly op: 'new' | 'del'; readonly index: number }
  | { readonly kind: 'neigh'; readonly op: 'new' | 'del'; readonly index: number; readonly ip: number; readonly mac: string | undefined }
  | { readonly kind: 'fdb'; readonly op: 'new' | 'del'; readonly index: number; readonly mac: string; readonly dst: number }
  | { readonly kind: 'neigh6'; readonly op: 'new' | 'del'; readonly index: number; readonly ip: bigint; readonly mac: string | undefined }
  | { readonly kind: 'fdb6'; readonly op: 'new' | 'del'; readonly index: number; readonly mac: string; readonly dst: bigint }
  | { readonly kind: 'lost'; readonly reason: string };

export interface AddressesResultOf<A extends number | bigint> extends EnsureResult {
  readonly added: ReadonlyArray<AddrSpecOf<A>>;
  readonly removed: ReadonlyArray<AddrSpecOf<A>>;
}
export type AddressesResult = AddressesResultOf<number>;
export type Addresses6Result = AddressesResultOf<bigint>;

/**
 * The facade. Routes, neighbors and FDB entries are programmed in batches
 * (the backends program thousands at once): one dump per call at most, the
 * requests pipelined on the socket, one result per item, in order, so one
 * rejected object never hides the others. A single object is a batch of one
 * (`only()` turns its result into a boolean or a thrown error).
 */
export interface Netlink {
  // Links
  listLinks(): Promise<LinkInfo[]>;
  linkByName(name: string): Promise<LinkInfo | null>;
  linkByIndex(index: number): Promise<LinkInfo | null>;
  /** The IPv4 default route (lowest metric, main table); null if there is none. */
  defaultRouteInterface(): Promise<DefaultRouteIface | null>;
  /** Removes a link; false if it did not exist. */
  deleteLink(index: number): Promise<boolean>;
  ensureLinkUp(index: number): Promise<EnsureResult>;
  ensureMtu(index: number, mtu: number): Promise<EnsureResult>;
  /** Creates the VXLAN link, or recreates it if an existing one has other parameters. */
  ensureVxlan(spec: VxlanSpec): Promise<LinkInfo & EnsureResult>;

  // Addresses
  /** IPv4 addresses of one link (or of all links). */
  listAddresses(index?: number): Promise<Array<AddrSpec & { readonly index: number }>>;
  /** Makes the link's IPv4 addresses exactly `want`. */
  ensureAddresses(index: number, want: readonly AddrSpec[]): Promise<AddressesResult>;
  /** Global-scope IPv6 addresses of one link (or of all links); link-local ones are left out. */
  listAddresses6(index?: number): Promise<Array<Addr6Spec & { readonly index: number }>>;
  /**
   * Makes the link's global IPv6 addresses exactly `want` (link-local ones
   * are the kernel's and stay). New addresses skip duplicate address
   * detection (IFA_F_NODAD): Rudder's addresses are its own lease's, and a
   * tentative address could not be used for seconds.
   */
  ensureAddresses6(index: number, want: readonly Addr6Spec[]): Promise<Addresses6Result>;

  // Routes
  listRoutes(filter?: RouteFilter): Promise<RouteInfo[]>;
  /**
   * Makes each route exist as specified (NLM_F_REPLACE on the kernel's key
   * dst/table/metric); with a dump, also removes other Rudder-protocol routes
   * to the same dst in that table, so a moved route never leaves its old copy.
   */
  ensureRoutes(specs: readonly RouteSpec[], opts?: EnsureOptions): Promise<BatchResult[]>;
  /** An `unreachable` route to spec.dst at spec.metric, unless exactly that one is there. */
  ensureUnreachableRoute(spec: UnreachableRouteSpec): Promise<EnsureResult>;
  /** changed = the route existed. */
  deleteRoutes(keys: readonly RouteKey[]): Promise<BatchResult[]>;

  // IPv6 routes: as the IPv4 ones (same ensure, batch and stale-copy rules).
  listRoutes6(filter?: RouteFilter): Promise<Route6Info[]>;
  ensureRoutes6(specs: readonly Route6Spec[], opts?: EnsureOptions): Promise<BatchResult[]>;
  ensureUnreachableRoute6(spec: Unreachable6Spec): Promise<EnsureResult>;
  deleteRoutes6(keys: readonly Route6Key[]): Promise<BatchResult[]>;

  // Neighbors: permanent ARP entries ip → mac on a link
  listNeighbors(index: number): Promise<NeighborSpec[]>;
  ensureNeighbors(specs: readonly NeighborSpec[], opts?: EnsureOptions): Promise<BatchResult[]>;
  deleteNeighbors(keys: readonly NeighborKey[]): Promise<BatchResult[]>;

  // FDB: permanent forwarding entries mac → remote dst on a VXLAN link, one remote per MAC
  listFdb(index: number): Promise<FdbSpec[]>;
  ensureFdbs(specs: readonly FdbSpec[], opts?: EnsureOptions): Promise<BatchResult[]>;
  deleteFdbs(specs: readonly FdbSpec[]): Promise<BatchResult[]>;

  // The same for IPv6: NDP entries, and FDB entries with an IPv6 remote (an IPv6 VXLAN device)
  listNeighbors6(index: number): Promise<Neighbor6Spec[]>;
  ensureNeighbors6(specs: readonly Neighbor6Spec[], opts?: EnsureOptions): Promise<BatchResult[]>;
  deleteNeighbors6(keys: readonly Neighbor6Key[]): Promise<BatchResult[]>;
  listFdb6(index: number): Promise<Fdb6Spec[]>;
  ensureFdbs6(specs: readonly Fdb6Spec[], opts?: EnsureOptions): Promise<BatchResult[]>;
  deleteFdbs6(specs: readonly Fdb6Spec[]): Promise<BatchResult[]>;

  /**
   * Subscribes to the kernel's change notifications (rtnetlink groups LINK,
   * IPV4_IFADDR, IPV6_IFADDR, IPV4_ROUTE, IPV6_ROUTE, NEIGH) on a socket of
   * its own. Only Rudder-protocol routes (`route`, `route6`), and
   * links/addresses (either family)/neighbors/FDB entries of devices
   * `interested(index)` accepts, are decoded and passed on; `lost` reports
   * dropped notifications (socket buffer overrun: re-read everything).
   * Returns the unsubscribe function.
   */
  watchKernel(interested: (index: number) => boolean, onChange: (ch: KernelChange) => void): () => void;

  /** Closes the socket. Idempotent. */
  close(): void;
}

/** The outcome of a one-item batch: whether it changed the kernel; its failure is thrown. */
export function only(results: readonly BatchResult[]): boolean {
  const r = results[0];
  if (r === undefined) throw new Error('netlink: a one-item batch returned no result');
  if (r.error !== undefined) throw r.error;
  return r.changed;
}
