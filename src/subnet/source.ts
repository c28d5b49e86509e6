/**
 * The subnet source seam: where the daemon gets its network config, its own
 * subnet and its peers. Two implementations: etcd (Registry + SubnetManager,
 * flannel's etcd layout) and Kubernetes (kube/source.ts: Node objects, the
 * subnet from spec.podCIDR, the config from a file). The daemon's logic —
 * backend start/apply, subnet file, ip-masq, metrics, sd_notify — is the same
 * for both.
 */
import type { Registry as PromRegistry } from 'prom-client';
import type { NetworkConfig } from '../config';
import type { Cidr } from '../ip/ipv4';
import type { Cidr6 } from '../ip/ipv6';
import type { Logger } from '../log';
import type { EtcdStats } from '../metrics/telemetry';
import type { Lease } from './lease';
import { SubnetManager } from './manager';
import { configKey, type PeerSource, type Registry } from './registry';

/** Takes this host's lease and keeps it published. */
export interface LeaseKeeper {
  /** The lease currently held (after acquire). */
  readonly lease: Lease;
  /** True when the lease never expires (an etcd reservation; every Node in Kubernetes mode). */
  readonly isReservation: boolean;
  /** Takes the lease; transient trouble is a RudderError E_ETCD, E_KUBE or E_ACQUIRE (the daemon retries). */
  acquire(remembered: Cidr | null, remembered6?: Cidr6 | null): Promise<Lease>;
  /** The watcher saw our own entry change (null: gone). */
  ownKeyChanged(current: Lease | null): void;
  /** Keeps the lease until `signal` aborts; rejects only when it is irrecoverably lost. */
  keep(signal: AbortSignal): Promise<void>;
  /**
   * New BackendData (a rotated key): written by keep() soon, retried like a
   * renewal. With IPv6 on, `v6Data` replaces BackendV6Data too (a wireguard
   * key is both); without it BackendV6Data stays as it is.
   */
  setBackendData(data: Readonly<Record<string, unknown>>, v6Data?: Readonly<Record<string, unknown>>): void;
}

export interface KeeperOptions {
  config: NetworkConfig;
  publicIP: number;
  /** EnableIPv6: this host's PublicIPv6 (-public-ipv6, else the interface's global IPv6). */
  publicIPv6?: bigint | null;
  backendType: string;
  backendData: Readonly<Record<string, unknown>>;
  /** EnableIPv6: BackendV6Data to publish. */
  backendV6Data?: Readonly<Record<string, unknown>>;
  /** This host's identity (host-id.ts); etcd mode writes it into the lease. */
  hostId?: string | undefined;
  ttlMs: number;
  renewMarginMs: number;
  log: Logger;
  stats?: EtcdStats;
}

/** A source's own metrics (Kubernetes mode): what etcd mode reports as rudder_etcd_* goes here instead. */
export interface SourceMetrics {
  /** Takes the failures and recoveries that the watcher, the keeper and the config wait report. */
  readonly stats: EtcdStats;
  /** Adds the source's metric families to the endpoint's registry (only with -metrics-addr). */
  register(registry: PromRegistry): Promise<void>;
}

export interface SubnetSource {
  /** The config and every host's lease. */
  readonly peers: PeerSource;
  /** Where the config lives, for messages ("/coreos.com/network/config", a file path). */
  readonly configWhere: string;
  /** How a user provides a missing config. */
  readonly configHint: string;
  /** Absent for etcd: its failures are the daemon's rudder_etcd_* counters. */
  readonly metrics?: SourceMetrics;
  keeper(o: KeeperOptions): LeaseKeeper;
}

/** etcd mode: the registry holds config and leases; SubnetManager takes and renews the lease. */
export function etcdSource(registry: Registry, prefix: string): SubnetSource {
  const key = configKey(prefix);
  return {
    peers: registry,
    configWhere: key,
    configHint: `etcdctl put ${key} '{"Network":"10.0.0.0/16"}'`,
    keeper: (o) => new SubnetManager({ ...o, registry, etcdPrefix: prefix }),
  };
}
