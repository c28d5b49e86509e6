/**
 * The seam between the core and the metrics endpoint. Core modules (subnet
 * manager, lease watcher, daemon, ip-masq) only call the small interfaces
 * below; they never import prom-client. The daemon creates one Telemetry and
 * hands it around; src/metrics/prometheus.ts turns it, and a snapshot of the
 * daemon read at scrape time, into Prometheus metrics.
 */
import type { PeerStatus } from '../backend/types';

/** Which part of the daemon talked to etcd. */
export type EtcdComponent = 'config' | 'lease' | 'watch';

/** Reported where the manager/watcher/daemon log "etcd unreachable" and its recovery. */
export interface EtcdStats {
  /** An etcd request failed (the caller logs "etcd unreachable" and retries). */
  etcdError(component: EtcdComponent): void;
  /** etcd answered again after failures ("etcd reachable again", "lease watch re-established"). */
  etcdReconnected(component: EtcdComponent): void;
}

/** Does nothing: the default when a caller passes no stats. */
export const noStats: EtcdStats = {
  etcdError: () => undefined,
  etcdReconnected: () => undefined,
};

export type LeaseEventType = 'added' | 'removed';

/** Plain counters, only ever incremented. */
export class Telemetry implements EtcdStats {
  readonly etcdErrors: Record<EtcdComponent, number> = { config: 0, lease: 0, watch: 0 };
  readonly etcdReconnects: Record<EtcdComponent, number> = { config: 0, lease: 0, watch: 0 };
  /** Lease events delivered by the watcher (own lease included). */
  readonly leaseEvents: Record<LeaseEventType, number> = { added: 0, removed: 0 };
  /** Times the ip-masq rules were found changed or missing and put back. */
  ipMasqRestores = 0;

  etcdError(component: EtcdComponent): void {
    this.etcdErrors[component]++;
  }

  etcdReconnected(component: EtcdComponent): void {
    this.etcdReconnects[component]++;
  }

  leaseEvent(type: LeaseEventType, n = 1): void {
    this.leaseEvents[type] += n;
  }
}

/** What the daemon is doing now, read at scrape time (no timers). */
export interface DaemonSnapshot {
  /** Daemon.state: 'waiting-config' | 'acquiring' | 'programming' | 'ready' | 'stopping' | 'stopped'. */
  readonly state: string;
  /** The lease held, null before one is acquired. */
  readonly lease: {
    /** The IPv4 subnet; null in an IPv6-only lease. */
    readonly subnet: string | null;
    /** The IPv6 subnet (EnableIPv6). */
    readonly ipv6Subnet?: string;
    /** ms since the epoch; null for a reservation (never expires). */
    readonly expiresAt: number | null;
    readonly reservation: boolean;
  } | null;
  readonly backend: string | null;
  /** Peer leases known (other hosts' leases). */
  readonly peers: number;
  /** Peer leases with a subnet of each family (a dual-stack lease counts in both). */
  readonly peerSubnets?: { readonly ipv4: number; readonly ipv6: number };
  /** The backend's data plane counters (udp), null when it has none. */
  readonly dataplane: Readonly<Record<string, number>> | null;
  /** Whether -ip-masq rules are installed (null when -ip-masq is off). */
  readonly ipMasq: boolean | null;
  /** The backend's peers with their sessions (wireguard); absent or null otherwise. */
  readonly peerStatus?: readonly PeerStatus[] | null;
}
