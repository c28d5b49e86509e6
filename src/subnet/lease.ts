/**
 * The lease: one host's claim on one subnet (or one of each family), as
 * stored in etcd at `<prefix>/subnets/<key>` with a flannel-compatible JSON
 * value. The key is flannel's: `10.42.5.0-24` (IPv4), `10.42.5.0-24&fd42:42:0:5::-64`
 * (dual-stack) or `0.0.0.0-0&fd42:42:0:5::-64` (IPv6-only); `formatLeaseKey`
 * and `parseLeaseKey` own that form, both ways.
 */
import { Cidr, cidrEquals, cidrToKey, formatCidr, keyToCidr } from '../ip/ipv4';
import { Cidr6, cidr6Equals, cidr6ToKey, formatCidr6, keyToCidr6 } from '../ip/ipv6';

export interface Lease {
  /** The IPv4 subnet; 0.0.0.0/0 (flannel's empty placeholder) in an IPv6-only lease. */
  readonly subnet: Cidr;
  /** The IPv6 subnet, when the lease has one (EnableIPv6). */
  readonly ipv6Subnet?: Cidr6;
  /** Underlay address other hosts send to (0 = 0.0.0.0 when the host has no IPv4 underlay). */
  readonly publicIP: number;
  /** IPv6 underlay address other hosts send to (PublicIPv6), when the lease names one. */
  readonly publicIPv6?: bigint;
  /** BackendV6Data, when the lease has it (published as-is). */
  readonly backendV6Data?: Readonly<Record<string, unknown>>;
  readonly backendType: string;
  /** Backend-specific data (vxlan: VTEP MAC), published as-is. */
  readonly backendData: Readonly<Record<string, unknown>>;
  /** The holder's host identity (`RudderHostID`), when a Rudder wrote the lease; flannel's have none. */
  readonly hostId?: string;
  /** Absolute expiry in ms since the epoch when known (own lease); null for a reservation or when not tracked. */
  readonly expiresAt: number | null;
}

/** What flows from the registry watcher to a backend. */
export type LeaseEvent =
  | { readonly type: 'added'; readonly lease: Lease }
  | { readonly type: 'removed'; readonly lease: Lease };

/** True if two leases would program the same kernel/data-plane state. */
export function sameAttrs(a: Lease, b: Lease): boolean {
  return (
    cidrEquals(a.subnet, b.subnet) &&
    a.publicIP === b.publicIP &&
    a.backendType === b.backendType &&
    JSON.stringify(a.backendData) === JSON.stringify(b.backendData) &&
    sameV6(a.ipv6Subnet, b.ipv6Subnet) &&
    a.publicIPv6 === b.publicIPv6 &&
    JSON.stringify(a.backendV6Data) === JSON.stringify(b.backendV6Data)
  );
}

function sameV6(a: Cidr6 | undefined, b: Cidr6 | undefined): boolean {
  return a === undefined || b === undefined ? a === b : cidr6Equals(a, b);
}

/** The empty IPv4 part of an IPv6-only lease key (`0.0.0.0-0`, as flannel writes it). */
export const NO_IPV4: Cidr = { ip: 0, prefix: 0 };

/** Whether the lease has an IPv4 subnet (not the IPv6-only placeholder). */
export function hasIpv4(l: { readonly subnet: Cidr }): boolean {
  return l.subnet.prefix !== 0;
}

/** The subnets a lease key names. */
export interface LeaseSubnets {
  readonly subnet: Cidr;
  readonly ipv6Subnet?: Cidr6 | undefined;
}

/** The key suffix under `subnets/` (flannel's form). */
export function formatLeaseKey(k: LeaseSubnets): string {
  return k.ipv6Subnet === undefined ? cidrToKey(k.subnet) : `${cidrToKey(k.subnet)}&${cidr6ToKey(k.ipv6Subnet)}`;
}

/**
 * Parses a key suffix in flannel's forms; null for anything else. Only the
 * canonical spelling is accepted (what formatLeaseKey writes, and what
 * flannel's Go formatting writes), so two keys never name one subnet.
 */
export function parseLeaseKey(s: string): LeaseSubnets | null {
  const amp = s.indexOf('&');
  if (amp < 0) {
    const subnet = keyToCidr(s);
    return subnet ? { subnet } : null;
  }
  const subnet = s.slice(0, amp) === '0.0.0.0-0' ? NO_IPV4 : keyToCidr(s.slice(0, amp));
  const ipv6Subnet = keyToCidr6(s.slice(amp + 1));
  if (!subnet || !ipv6Subnet || ipv6Subnet.prefix === 0) return null;
  return { subnet, ipv6Subnet };
}

/** True if both name the same key (both families). */
export function sameKey(a: LeaseSubnets, b: LeaseSubnets): boolean {
  return cidrEquals(a.subnet, b.subnet) && sameV6(a.ipv6Subnet, b.ipv6Subnet);
}

/** `10.42.5.0/24`, `10.42.5.0/24 fd42:42:0:5::/64` or `fd42:42:0:5::/64`: for messages. */
export function leaseName(l: LeaseSubnets): string {
  if (l.ipv6Subnet === undefined) return formatCidr(l.subnet);
  const v6 = formatCidr6(l.ipv6Subnet);
  return hasIpv4(l) ? `${formatCidr(l.subnet)} ${v6}` : v6;
}
