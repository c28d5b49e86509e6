/**
 * The Registry seam: everything Rudder stores in etcd, in Rudder's terms.
 * `etcd-registry.ts` implements it over the etcd v3 API; the rest of the
 * control plane depends only on this interface.
 *
 * Key layout (docs/architecture.md, "etcd: key layout and lease values"): `<prefix>/config` holds the network config;
 * `<prefix>/subnets/<a.b.c.d>-<len>` one lease each, JSON
 * `{"PublicIP","BackendType","BackendData","RudderHostID"}`, attached to an
 * etcd lease — or to none, which makes it a reservation. `RudderHostID` is
 * optional (flannel neither writes nor reads it).
 */
import { Cidr, cidrToKey, formatIp, keyToCidr, parseIp } from '../ip/ipv4';
import type { Lease } from './lease';

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
  | { readonly kind: 'delete'; readonly subnet: Cidr }
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
  /** Creates the key only if absent, attached to a new etcd lease of ttlMs. Null on conflict. */
  createLease(subnet: Cidr, value: LeaseValue, ttlMs: number): Promise<LeaseRecord | null>;
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

export interface LeaseValue {
  readonly PublicIP: string;
  readonly BackendType: string;
  readonly BackendData: Readonly<Record<string, unknown>>;
  /** The writer's host identity (src/subnet/host-id.ts); absent in flannel's leases. */
  readonly RudderHostID?: string;
}

export function leaseValue(
  publicIP: number,
  backendType: string,
  backendData: Readonly<Record<string, unknown>>,
  hostId?: string,
): LeaseValue {
  const v: LeaseValue = { PublicIP: formatIp(publicIP), BackendType: backendType, BackendData: backendData };
  return hostId === undefined ? v : { ...v, RudderHostID: hostId };
}

/** A host identity as stored: 1 to 64 letters, digits, '.', '_' or '-'. */
export const HOST_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function subnetKey(prefix: string, subnet: Cidr): string {
  return `${trimSlash(prefix)}/subnets/${cidrToKey(subnet)}`;
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
  const subnet = keyToCidr(keySuffix);
  if (!subnet) return { error: `key suffix ${JSON.stringify(keySuffix)} is not a subnet like 10.0.5.0-24` };
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
  const lease: Lease = { subnet, publicIP: ip, backendType: bt, backendData, expiresAt };
  return { lease: hid === undefined ? lease : { ...lease, hostId: hid } };
}
