/**
 * The lease: one host's claim on one subnet, as stored in etcd at
 * `<prefix>/subnets/<a.b.c.d>-<len>` with a flannel-compatible JSON value.
 */
import { Cidr, cidrEquals, formatCidr } from '../ip/ipv4';

export interface Lease {
  readonly subnet: Cidr;
  /** Underlay address other hosts send to. */
  readonly publicIP: number;
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
    JSON.stringify(a.backendData) === JSON.stringify(b.backendData)
  );
}

export function leaseName(l: Lease): string {
  return formatCidr(l.subnet);
}
