/**
 * The Registry seam: everything Rudder stores in etcd, in Rudder's terms.
 * `etcd-registry.ts` implements it over the etcd v3 API; the rest of the
 * control plane depends only on this interface.
 *
 * Key layout (docs/architecture.md, "etcd: key layout and lease values"): `<prefix>/config` holds the network config;
 * `<prefix>/subnets/<a.b.c.d>-<len>` one lease each, JSON
 * `{"PublicIP","BackendType","BackendData","RudderHostID"}`, attached to an
 * etcd lease — or to none, which makes it a reservation. `RudderHostID` is
 * optional (flannel neither writes nor reads it). With IPv6 on, the key is
 * flannel's `<v4>-<len>&<v6>-<len>` (lease.ts) and the value adds
 * `PublicIPv6` and `BackendV6Data`.
 */
import { Cidr, formatIp, parseIp } from '../ip/ipv4';
import { Cidr6, formatIp6, parseIp6 } from '../ip/ipv6';
import { type Lease, type LeaseSubnets, formatLeaseKey, parseLeaseKey } from './lease';

export interface LeaseRecord {
  readonly lease: Lease;
  /** etcd mod_revision of the key: the compare-and-swap token. */
  readonly modRevision: string;
  /** etcd lease ID ("0" for a reservation). */
  readonly etcdLeaseId: string;
}

export interface LeaseList {
  readonly records: readonly LeaseRecord[];
  /** Store revision the list was read at: watch from revision + 1. */
  readonly revision: string;
  /** Keys under subnets/ that are not valid leases (reported, ignored). */
  readonly invalid: readonly { key: string; reason: string }[];
}

export type WatchBatch =
  | { readonly kind: 'put'; readonly record: LeaseRecord }
  | { readonly kind: 'delete'; readonly subnet: Cidr; readonly ipv6Subnet?: Cidr6 }
  | { readonly kind: 'invalid'; readonly key: string; readonly reason: string };

export interface WatchHandlers {
  /** Events of one etcd revision batch, in order. */
  onEvents(events: readonly WatchBatch[]): void;
  /** The watch ended (disconnect, compaction, cancel): the caller lists again. */
  onBroken(reason: unknown): void;
}

/**
 * What the daemon and the lease watcher read: the network config and every
 * host's lease, listed then watched. etcd (this file's Registry) and
 * Kubernetes (kube/source.ts: Node objects and a config file) implement it.
 */
export interface PeerSource {
  /** What to call the store in messages ("Kubernetes API server"); etcd when absent. */
  readonly storeName?: string;
  getConfig(): Promise<string | null>;
  /** Calls onChange with the config text (null when deleted) on each change; returns a stop function. */
  watchConfig(onChange: (text: string | null) => void, onBroken: (reason: unknown) => void): Promise<() => void>;
  listLeases(): Promise<LeaseList>;
  /** Watches from `fromRevision` (the listed revision + 1). */
  watchLeases(fromRevision: string, handlers: WatchHandlers): Promise<() => void>;
  close(): void;
}

export interface Registry extends PeerSource {
  /** Writes the config; with ifAbsent, only when no config exists. Returns whether it wrote. */
  putConfig(text: string, ifAbsent: boolean): Promise<boolean>;
  /**
   * Creates the key only if absent, attached to a new etcd lease of ttlMs. Null on conflict.
   * `more.ipv6Subnet` makes it a dual-stack (or, with `subnet` 0.0.0.0/0, IPv6-only) key;
   * `more.noKeyCreatedAfter` (a listed revision) also fails it when any lease key was created
   * since that listing, or another key names the same IPv4 subnet: what keeps the IPv6 half
   * of a dual-stack key unique, since no key compare can see a key's suffix.
   */
  createLease(subnet: Cidr, value: LeaseValue, ttlMs: number, more?: CreateOptions): Promise<LeaseRecord | null>;
  /**
   * Rewrites an existing key only if it still has `prev.modRevision`. A
   * reservation stays a reservation; otherwise the key moves to a new etcd
   * lease of ttlMs (the old one is revoked). Null on conflict.
   */
  updateLease(prev: LeaseRecord, value: LeaseValue, ttlMs: number): Promise<LeaseRecord | null>;
  /** Extends the etcd lease to its full TTL; returns the new expiry (ms epoch), null if the lease is gone. */
  renewLease(rec: LeaseRecord): Promise<number | null>;
  /** Remaining TTL of an etcd lease in ms (null if expired or a reservation). */
  timeToLive(etcdLeaseId: string): Promise<number | null>;
}

export interface CreateOptions {
  readonly ipv6Subnet?: Cidr6 | undefined;
  readonly noKeyCreatedAfter?: string | undefined;
}

export interface LeaseValue {
  readonly PublicIP: string;
  /** IPv6 on: the IPv6 underlay address, or null (flannel writes null when there is none). */
  readonly PublicIPv6?: string | null;
  readonly BackendType: string;
  readonly BackendData: Readonly<Record<string, unknown>>;
  /** IPv6 on: the backend's data for the IPv6 half. */
  readonly BackendV6Data?: Readonly<Record<string, unknown>>;
  /** The writer's host identity (src/subnet/host-id.ts); absent in flannel's leases. */
  readonly RudderHostID?: string;
}

/** What a dual-stack or IPv6-only lease value adds; absent for IPv4-only, whose value stays as it was. */
export interface LeaseValueV6 {
  readonly publicIPv6: bigint | null;
  readonly backendV6Data: Readonly<Record<string, unknown>>;
}

export function leaseValue(
  publicIP: number,
  backendType: string,
  backendData: Readonly<Record<string, unknown>>,
  hostId?: string,
  v6?: LeaseValueV6,
): LeaseValue {
  const v: LeaseValue = v6
    ? {
        PublicIP: formatIp(publicIP),
        PublicIPv6: v6.publicIPv6 === null ? null : formatIp6(v6.publicIPv6),
        BackendType: backendType,
        BackendData: backendData,
        BackendV6Data: v6.backendV6Data,
      }
    : { PublicIP: formatIp(publicIP), BackendType: backendType, BackendData: backendData };
  return hostId === undefined ? v : { ...v, RudderHostID: hostId };
}

/** A host identity as stored: 1 to 64 letters, digits, '.', '_' or '-'. */
export const HOST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function subnetKey(prefix: string, subnet: Cidr, ipv6Subnet?: Cidr6): string {
  return `${trimSlash(prefix)}/subnets/${formatLeaseKey({ subnet, ipv6Subnet })}`;
}

/** The key of a lease (both families). */
export function leaseKeyOf(prefix: string, l: LeaseSubnets): string {
  return `${trimSlash(prefix)}/subnets/${formatLeaseKey(l)}`;
}

/** The key prefix of the config and the leases unless -etcd-prefix says otherwise (flannel's). */
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';

export function configKey(prefix: string): string {
  return `${trimSlash(prefix)}/config`;
}

export function subnetsPrefix(prefix: string): string {
  return `${trimSlash(prefix)}/subnets/`;
}

function trimSlash(p: string): string {
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

/**
 * Parses one subnets/ entry (pure). Returns an error string for anything
 * that is not a lease we can route to, so one bad key never stops a watch.
 */
export function parseLeaseEntry(
  keySuffix: string,
  value: string,
  expiresAt: number | null,
): { lease: Lease } | { error: string } {
  const key = parseLeaseKey(keySuffix);
  if (!key) return { error: `key suffix ${JSON.stringify(keySuffix)} is not a subnet like 10.0.5.0-24 (or 10.0.5.0-24&fd00:0:0:5::-64)` };
  const { subnet, ipv6Subnet } = key;
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return { error: `value is not JSON: ${JSON.stringify(value.slice(0, 80))}` };
  }
  if (typeof v !== 'object' || v === null) return { error: 'value is not a JSON object' };
  const o = v as Record<string, unknown>;
  const ip = typeof o.PublicIP === 'string' ? parseIp(o.PublicIP) : null;
  if (ip === null) return { error: `PublicIP=${JSON.stringify(o.PublicIP)}: expected an IPv4 address` };
  const bt = o.BackendType === undefined ? 'udp' : o.BackendType;
  if (typeof bt !== 'string') return { error: `BackendType=${JSON.stringify(o.BackendType)}: expected a string` };
  const bd = o.BackendData;
  const backendData =
    typeof bd === 'object' && bd !== null && !Array.isArray(bd) ? (bd as Record<string, unknown>) : {};
  const hid = o.RudderHostID;
  if (hid !== undefined && (typeof hid !== 'string' || !HOST_ID_RE.test(hid))) {
    return { error: `RudderHostID=${JSON.stringify(hid)}: expected 1 to 64 letters, digits, '.', '_' or '-'` };
  }
  let lease: Lease = { subnet, publicIP: ip, backendType: bt, backendData, expiresAt };
  if (ipv6Subnet !== undefined) lease = { ...lease, ipv6Subnet };
  // PublicIPv6 and BackendV6Data are read whatever the key: a flannel host may write them with PublicIPv6 null.
  const p6 = o.PublicIPv6;
  if (p6 !== undefined && p6 !== null) {
    const v = typeof p6 === 'string' ? parseIp6(p6) : null;
    if (v === null) return { error: `PublicIPv6=${JSON.stringify(p6)}: expected an IPv6 address or null` };
    lease = { ...lease, publicIPv6: v };
  }
  const bd6 = o.BackendV6Data;
  if (typeof bd6 === 'object' && bd6 !== null && !Array.isArray(bd6)) lease = { ...lease, backendV6Data: bd6 as Record<string, unknown> };
  return { lease: hid === undefined ? lease : { ...lease, hostId: hid } };
}
