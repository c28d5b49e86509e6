/**
 * The backend seam. The daemon knows only these interfaces; each backend
 * (udp, vxlan, host-gw, wireguard) lives in its own folder and is picked by name from
 * the one map in `index.ts`.
 *
 * Lifecycle, driven by the daemon:
 *   1. `prepare()`  — host-local state needed before the lease is taken;
 *                     returns the BackendData to publish (vxlan: VTEP MAC).
 *   2. the daemon acquires the lease
 *   3. `start(own)` — programs this host for its own lease, returns a Network
 *   4. `network.apply(events)` — peer lease changes, serially, in order
 *   5. `network.stop()` — undoes `start` (and `prepare`) in reverse
 */
import type { Logger } from '../log';
import type { NetworkConfig } from '../config';
import type { Lease, LeaseEvent } from '../subnet/lease';

/** The underlay interface used for host-to-host traffic. */
export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  /** The interface's own IPv4 address (uint32); 0 when it has none (allowed in an IPv6-only network). */
  readonly address: number;
  /** Address other hosts send to (differs from `address` behind NAT); 0 without IPv4. */
  readonly publicIP: number;
  readonly mtu: number;
  /** This host's PublicIPv6 (EnableIPv6: -public-ipv6, else the interface's global IPv6 address). */
  readonly publicIPv6?: bigint;
}

export interface BackendContext {
  readonly config: NetworkConfig;
  readonly extIface: ExternalInterface;
  readonly log: Logger;
  /** The -port flag if given on the command line/environment (wins over Backend.Port). */
  readonly portFlag: number | undefined;
  /** wireguard: the private key file (-wireguard-key-file); the backend's default when absent. */
  readonly wireguardKeyFile?: string | undefined;
  /**
   * Republishes this host's lease with new BackendData (the wireguard key
   * after a rotation); the daemon's lease keeper writes it, retrying as it
   * retries renewals. Only after start.
   */
  readonly publish?: ((backendData: Record<string, unknown>) => void) | undefined;
}

export interface Backend {
  readonly type: string;
  /** Bytes of encapsulation: the subnet file's MTU is the underlay MTU minus this. */
  readonly overhead: number;
  /** True when the backend routes IPv6 leases (EnableIPv6); the daemon refuses IPv6 otherwise. */
  readonly carriesIPv6?: boolean;
  /**
   * The lease's BackendV6Data when IPv6 is on, if it differs from what
   * prepare() returns (vxlan: the IPv6 VTEP's own MAC); default the same.
   */
  readonly backendV6Data?: Readonly<Record<string, unknown>>;
  prepare(signal: AbortSignal): Promise<Record<string, unknown>>;
  /**
   * Programs the backend for lease `own`. `peers` are the other hosts' leases
   * known at start: kernel state that already matches them is left in place
   * (so a restarted daemon does not interrupt traffic the kernel carries);
   * everything else of Rudder's is removed as stale. The daemon applies the
   * current leases right after start either way.
   */
  start(own: Lease, signal: AbortSignal, peers?: readonly Lease[]): Promise<Network>;
}

export interface Network {
  /** MTU containers should use (underlay MTU − overhead). */
  readonly mtu: number;
  /** Applies peer lease changes (never this host's own lease). Called serially. */
  apply(events: readonly LeaseEvent[]): Promise<void>;
  /** Undoes what start/prepare did; safe to call once after any failure. */
  stop(): Promise<void>;
  /**
   * The data plane's counters (packets, bytes, drops per reason), read at
   * metrics scrape time; only backends with a data plane of their own (udp).
   */
  counters?(): Record<string, number>;
  /**
   * Replaces this host's key with a new one and republishes the lease;
   * resolves to the new public key. Only backends with a key (wireguard).
   * On failure the old key keeps running.
   */
  rotateKey?(): Promise<string>;
  /** Per-peer session status, read at metrics scrape time; only backends with sessions (wireguard). */
  peerStatus?(): readonly PeerStatus[];
}

/** One peer's session as the metrics report it. */
export interface PeerStatus {
  /** base64, as in the lease. */
  readonly publicKey: string;
  /** PublicIP:Port. */
  readonly endpoint: string;
  readonly allowedIps: readonly string[];
  /** Wall-clock ms of the latest completed handshake; 0 = none yet. */
  readonly latestHandshakeMs: number;
  /** Bytes of transport messages received from and sent to the peer. */
  readonly rxBytes: number;
  readonly txBytes: number;
}

export type BackendFactory = (ctx: BackendContext) => Backend;
