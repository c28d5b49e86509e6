/**
 * The kernel-state seam: what backends need from rtnetlink, as "ensure"
 * operations. Each ensure leaves matching state alone, replaces wrong state
 * and removes stale state, and reports whether it changed anything (so
 * callers can log real changes only and tests can prove idempotence).
 *
 * Addresses are IPv4 uint32 numbers as everywhere else in Rudder; MACs are
 * lower-case `aa:bb:cc:dd:ee:ff` strings (what BackendData carries).
 */
import type { Cidr } from '../ip/ipv4';

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
}

/** An interface address: the host's own address plus the prefix length. */
export interface AddrSpec {
  readonly ip: number;
  readonly prefix: number;
}

export type RouteScope = 'universe' | 'link' | 'host';

export interface RouteSpec {
  readonly dst: Cidr;
  readonly oif: number;
  readonly gateway?: number;
  /** Gateway need not be on a connected subnet (vxlan: via the peer's overlay address). */
  readonly onlink?: boolean;
  /** Default: 'universe' with a gateway, 'link' without. */
  readonly scope?: RouteScope;
  /** Default RTPROT_RUDDER. */
  readonly protocol?: number;
  /** Route priority; default 0. Part of the kernel's route key. */
  readonly metric?: number;
  /** Default TABLE_MAIN. */
  readonly table?: number;
}

export interface RouteInfo {
  readonly dst: Cidr;
  readonly table: number;
  readonly oif: number | undefined;
  readonly gateway: number | undefined;
  readonly onlink: boolean;
  readonly scope: number;
  readonly protocol: number;
  /** rtm_type (1 = unicast). */
  readonly type: number;
  readonly metric: number;
  readonly prefsrc: number | undefined;
}

export interface RouteFilter {
  readonly oif?: number;
  readonly protocol?: number;
  /** Default TABLE_MAIN; `'all'` for every table. */
  readonly table?: number | 'all';
}

/** An `unreachable` route: traffic to `dst` is refused ("network unreachable") instead of routed. */
export interface UnreachableRouteSpec {
  readonly dst: Cidr;
  /** Part of the kernel's route key: pick one no other route to `dst` uses. */
  readonly metric: number;
  /** Default RTPROT_RUDDER. */
  readonly protocol?: number;
  /** Default TABLE_MAIN. */
  readonly table?: number;
}

/** What `deleteRoute` needs to name one route (the kernel's key plus oif/gateway to be precise). */
export interface RouteKey {
  readonly dst: Cidr;
  readonly table?: number;
  readonly metric?: number;
  readonly oif?: number;
  readonly gateway?: number;
}

/** The IPv4 default route's interface: the underlay Rudder uses unless -iface says otherwise. */
export interface DefaultRouteIface {
  readonly link: LinkInfo;
  /** The interface address used for the route (prefsrc, else the primary address on the gateway's subnet). */
  readonly address: number;
  readonly prefix: number;
  readonly gateway: number | undefined;
  readonly metric: number;
}

export interface NeighborSpec {
  readonly index: number;
  readonly ip: number;
  readonly mac: string;
}

export interface FdbSpec {
  readonly index: number;
  readonly mac: string;
  /** Remote VTEP underlay address. */
  readonly dst: number;
}

export interface VxlanSpec {
  readonly name: string;
  readonly vni: number;
  /** UDP destination port (8472 for Rudder/flannel, 4789 IANA). */
  readonly port: number;
  /** Local underlay address for the VTEP; 0/undefined lets the kernel choose. */
  readonly local?: number;
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

export interface NeighborKey {
  readonly index: number;
  readonly ip: number;
}

/** One kernel change notification (see watchKernel). */
export type KernelChange =
  | { readonly kind: 'route'; readonly op: 'new' | 'del'; readonly route: RouteInfo }
  | { readonly kind: 'link' | 'addr'; readonly op: 'new' | 'del'; readonly index: number }
  | { readonly kind: 'neigh'; readonly op: 'new' | 'del'; readonly index: number; readonly ip: number; readonly mac: string | undefined }
  | { readonly kind: 'fdb'; readonly op: 'new' | 'del'; readonly index: number; readonly mac: string; readonly dst: number }
  | { readonly kind: 'lost'; readonly reason: string };

export interface AddressesResult extends EnsureResult {
  readonly added: readonly AddrSpec[];
  readonly removed: readonly AddrSpec[];
}

export interface Netlink {
  listLinks(): Promise<LinkInfo[]>;
  linkByName(name: string): Promise<LinkInfo | null>;
  linkByIndex(index: number): Promise<LinkInfo | null>;
  /** The link carrying this IPv4 address. */
  linkByAddress(ip: number): Promise<LinkInfo | null>;
  /** The IPv4 default route (lowest metric, main table); null if there is none. */
  defaultRouteInterface(): Promise<DefaultRouteIface | null>;
  /** Removes a link; false if it did not exist. */
  deleteLink(index: number): Promise<boolean>;

  ensureLinkUp(index: number): Promise<EnsureResult>;
  ensureMtu(index: number, mtu: number): Promise<EnsureResult>;

  /** IPv4 addresses of one link (or of all links). */
  listAddresses(index?: number): Promise<Array<AddrSpec & { readonly index: number }>>;
  /** Makes the link's IPv4 addresses exactly `want`. */
  ensureAddresses(index: number, want: readonly AddrSpec[]): Promise<AddressesResult>;

  listRoutes(filter?: RouteFilter): Promise<RouteInfo[]>;
  /**
   * Makes one route exist as specified (NLM_F_REPLACE on the kernel's key
   * dst/table/metric) and removes other Rudder-protocol routes to the same dst
   * in that table, so a moved route never leaves its old copy behind.
   */
  ensureRoute(spec: RouteSpec): Promise<EnsureResult>;
  /** An `unreachable` route to spec.dst at spec.metric, unless exactly that one is there. */
  ensureUnreachableRoute(spec: UnreachableRouteSpec): Promise<EnsureResult>;
  /** false if no such route existed. */
  deleteRoute(key: RouteKey): Promise<boolean>;

  listNeighbors(index: number): Promise<NeighborSpec[]>;
  /** Permanent ARP entry ip → mac on the link. */
  ensureNeighbor(spec: NeighborSpec): Promise<EnsureResult>;
  deleteNeighbor(index: number, ip: number): Promise<boolean>;

  listFdb(index: number): Promise<FdbSpec[]>;
  /** Permanent forwarding entry mac → remote dst on a VXLAN link. */
  ensureFdb(spec: FdbSpec): Promise<EnsureResult>;
  deleteFdb(spec: FdbSpec): Promise<boolean>;

  // Batches: one dump per call, requests pipelined on the socket; one result per item, in order.
  /** ensureRoute for many routes. */
  ensureRoutes(specs: readonly RouteSpec[]): Promise<BatchResult[]>;
  /** deleteRoute for many routes (changed = it existed). */
  deleteRoutes(keys: readonly RouteKey[]): Promise<BatchResult[]>;
  /** ensureNeighbor for many entries. */
  ensureNeighbors(specs: readonly NeighborSpec[]): Promise<BatchResult[]>;
  deleteNeighbors(keys: readonly NeighborKey[]): Promise<BatchResult[]>;
  /** ensureFdb for many entries (one remote per MAC). */
  ensureFdbs(specs: readonly FdbSpec[]): Promise<BatchResult[]>;
  deleteFdbs(specs: readonly FdbSpec[]): Promise<BatchResult[]>;

  // Writes without a read (NLM_F_CREATE|NLM_F_REPLACE, idempotent by the kernel's key), for
  // callers that know what the kernel holds: a plan made from a dump, or a backend applying a
  // lease event to state it programmed itself. changed is always true.
  setRoutes(specs: readonly RouteSpec[]): Promise<BatchResult[]>;
  setNeighbors(specs: readonly NeighborSpec[]): Promise<BatchResult[]>;
  setFdbs(specs: readonly FdbSpec[]): Promise<BatchResult[]>;

  /**
   * Subscribes to the kernel's change notifications (rtnetlink groups LINK,
   * IPV4_IFADDR, IPV4_ROUTE, NEIGH) on a socket of its own. Only Rudder-
   * protocol routes, and links/addresses/neighbors/FDB entries of devices
   * `interested(index)` accepts, are decoded and passed on; `lost` reports
   * dropped notifications (socket buffer overrun: re-read everything).
   * Returns the unsubscribe function.
   */
  watchKernel(interested: (index: number) => boolean, onChange: (ch: KernelChange) => void): () => void;

  /** Creates the VXLAN link, or recreates it if an existing one has other parameters. */
  ensureVxlan(spec: VxlanSpec): Promise<LinkInfo & EnsureResult>;

  /** Closes the socket. Idempotent. */
  close(): void;
}
