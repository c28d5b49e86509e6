/**
 * The wireguard backend's peer table (pure): lease events in, the data
 * plane's peer set (`setPeers`) out. One peer per lease of type "wireguard"
 * with a valid `BackendData` `{"PublicKey","Port"}`: its key, its endpoint
 * pinned to the lease's PublicIP and Port, its allowed IPs = the lease's
 * subnets (the IPv6 one too when this host carries IPv6). On an IPv6
 * underlay (this host has no IPv4 PublicIP) the endpoint is the lease's
 * PublicIPv6 and the Port of its BackendV6Data (else of its BackendData).
 *
 * The data plane wants each key and each endpoint once. Two leases may share
 * them (a host that moved to a new subnet while its old lease has not
 * expired yet): leases with the same key and endpoint become one peer with
 * both subnets; a lease whose key or endpoint another lease already holds
 * with a different partner is left out (reported), the first by subnet
 * order winning, so the choice is stable.
 */
import { formatCidr } from '../../ip/ipv4';
import { formatCidr6 } from '../../ip/ipv6';
import type { WireGuardPeer, WireGuardPrefix, WireGuardPrefix6 } from '../../dataplane/native';
import type { UnderlayFamily } from '../../dataplane/types';
import { formatEndpoint } from '../tun-network';
import { formatLeaseKey, hasIpv4, type Lease, type LeaseEvent } from '../../subnet/lease';
import { isBase64Of } from '../../config';
import { PeerTable, bySubnet } from '../peers';
import { KEY_LEN } from './key';

/** A lease's peer: what setPeers needs, in the lease's terms. */
export interface WgLeasePeer {
  readonly key: string;
  /** The lease's IPv4 subnet; 0.0.0.0/0 for an IPv6-only lease (then not an allowed IP). */
  readonly subnet: WireGuardPrefix;
  /** The lease's IPv6 subnet, when both it and this host have one. */
  readonly subnet6?: WireGuardPrefix6;
  /** base64, as published. */
  readonly publicKey: string;
  readonly publicKeyBytes: Buffer;
  /** The endpoint: PublicIP on an IPv4 underlay (0 on an IPv6 one), PublicIPv6 on an IPv6 underlay. */
  readonly ip: number;
  readonly ip6?: bigint;
  readonly port: number;
}

export interface WgTableChange {
  readonly added: readonly WgLeasePeer[];
  readonly removed: readonly WgLeasePeer[];
  /** Leases of another backend type, first seen in this batch (logged once). */
  readonly ignored: readonly Lease[];
  /** wireguard leases this host cannot use, first seen in this batch, with why. */
  readonly invalid: ReadonlyArray<{ readonly lease: Lease; readonly why: string }>;
}

export interface WgPayload {
  readonly peers: WireGuardPeer[];
  /** Leases left out because their key or endpoint clashes with another lease's (one line each). */
  readonly conflicts: string[];
}

const validPort = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;

/** Why a wireguard lease's BackendData is unusable, or its key and port. */
export function parseBackendData(data: Readonly<Record<string, unknown>>, defaultPort: number): { publicKey: string; port: number } | string {
  const k = data['PublicKey'];
  if (typeof k !== 'string' || !isBase64Of(k, KEY_LEN)) {
    return `BackendData.PublicKey=${JSON.stringify(k)}: expected the base64 of a ${KEY_LEN}-byte X25519 public key`;
  }
  const p = data['Port'];
  if (p !== undefined && !validPort(p)) return `BackendData.Port=${JSON.stringify(p)}: expected a UDP port between 1 and 65535`;
  return { publicKey: k, port: p ?? defaultPort };
}

/**
 * A lease's endpoint on this host's underlay, or why it has none: its
 * PublicIP and `port` (its BackendData Port, else the default) on IPv4; its PublicIPv6 and the
 * Port of BackendV6Data when that names one (else `port`) on IPv6.
 */
export function endpointOf(l: Lease, port: number, underlay: UnderlayFamily): { ip: number; ip6?: bigint; port: number } | string {
  if (underlay === 'ipv4') {
    return l.publicIP !== 0 ? { ip: l.publicIP, port } : "no IPv4 PublicIP, and this host's underlay is IPv4 (it has an IPv4 PublicIP): expected a lease with a PublicIP";
  }
  if (l.publicIPv6 === undefined || l.publicIPv6 === 0n) return "no PublicIPv6, and this host's underlay is IPv6 (it has no IPv4 PublicIP): expected a lease with a PublicIPv6";
  const p6 = l.backendV6Data?.['Port'];
  if (p6 !== undefined && !validPort(p6)) return `BackendV6Data.Port=${JSON.stringify(p6)}: expected a UDP port between 1 and 65535`;
  return { ip: 0, ip6: l.publicIPv6, port: p6 ?? port };
}

export class WireGuardPeerTable {
  private readonly peers: PeerTable<WgLeasePeer>;
  /** Lease key → why its lease is unusable, from the latest batch (for the log). */
  private readonly why = new Map<string, string>();

  /**
   * `ownPublicKeys`: a lease with one of this host's keys (the one in use,
   * or one it held before a rotation; a live set) is an old lease of this
   * host, never a peer. `defaultPort`: a lease without Port listens on it.
   * `underlay`: this host's underlay family (underlayOf), which every peer is reached over.
   */
  constructor(own: Lease, ownPublicKeys: string | ReadonlySet<string>, defaultPort: number, underlay: UnderlayFamily = 'ipv4') {
    const ownKeys = typeof ownPublicKeys === 'string' ? new Set([ownPublicKeys]) : ownPublicKeys;
    const unusable = (key: string, why: string): string => {
      this.why.set(key, why);
      return why;
    };
    const ownHasIpv6 = own.ipv6Subnet !== undefined;
    this.peers = new PeerTable<WgLeasePeer>(own, {
      backendType: 'wireguard',
      peer: (l, key) => {
        const d = parseBackendData(l.backendData, defaultPort);
        if (typeof d === 'string') return unusable(key, d);
        if (ownKeys.has(d.publicKey)) return unusable(key, "BackendData.PublicKey is this host's own key (a lease this host held before?)");
        const at = endpointOf(l, d.port, underlay);
        if (typeof at === 'string') return unusable(key, at);
        const subnet6 = ownHasIpv6 && l.ipv6Subnet !== undefined ? { subnet6: { ip: l.ipv6Subnet.ip, prefix: l.ipv6Subnet.prefix } } : {};
        if (!hasIpv4(l) && subnet6.subnet6 === undefined) return unusable(key, 'no subnet of a family this host carries');
        return { key, subnet: { ip: l.subnet.ip, prefix: l.subnet.prefix }, ...subnet6, publicKey: d.publicKey, publicKeyBytes: Buffer.from(d.publicKey, 'base64'), ...at };
      },
      same: (a, b) =>
        a.publicKey === b.publicKey &&
        a.ip === b.ip &&
        a.ip6 === b.ip6 &&
        a.port === b.port &&
        a.subnet.ip === b.subnet.ip &&
        a.subnet.prefix === b.subnet.prefix &&
        a.subnet6?.ip === b.subnet6?.ip &&
        a.subnet6?.prefix === b.subnet6?.prefix,
    });
  }

  get size(): number {
    return this.peers.size;
  }

  apply(events: readonly LeaseEvent[]): WgTableChange {
    this.why.clear();
    const ch = this.peers.apply(events);
    const invalid = ch.invalid.map((lease) => ({ lease, why: this.why.get(formatLeaseKey(lease)) ?? 'unusable' }));
    return { added: ch.added, removed: ch.removed, ignored: ch.ignored, invalid };
  }

  /** The complete peer set for setPeers (a new array; keys and endpoints unique). */
  payload(): WgPayload {
    const byKey = new Map<string, { peer: WireGuardPeer & { allowedIps: WireGuardPrefix[]; allowedIps6: WireGuardPrefix6[] }; endpoint: string }>();
    const endpoints = new Map<string, string>(); // endpoint → key holding it
    const out: WireGuardPeer[] = [];
    const conflicts: string[] = [];
    for (const p of bySubnet(this.peers.values())) {
      const endpoint = formatEndpoint(p.ip, p.ip6, p.port);
      const seen = byKey.get(p.publicKey);
      if (seen !== undefined) {
        if (seen.endpoint === endpoint) {
          if (p.subnet.prefix !== 0) seen.peer.allowedIps.push(p.subnet);
          if (p.subnet6 !== undefined) seen.peer.allowedIps6.push(p.subnet6);
        } else {
          conflicts.push(`lease ${formatCidr(p.subnet)}: PublicKey ${p.publicKey} is also published by the lease of ${formatCidr(seen.peer.allowedIps[0] ?? p.subnet)} at ${seen.endpoint}, not at ${endpoint}`);
        }
        continue;
      }
      const holder = endpoints.get(endpoint);
      if (holder !== undefined) {
        conflicts.push(`lease ${formatCidr(p.subnet)}: endpoint ${endpoint} already belongs to PublicKey ${holder}, not ${p.publicKey}`);
        continue;
      }
      // An IPv6-only lease's 0.0.0.0/0 placeholder is no allowed IP (it would take every IPv4 packet).
      const peer = {
        publicKey: p.publicKeyBytes,
        endpoint: { ip: p.ip, port: p.port, ...(p.ip6 !== undefined ? { ip6: p.ip6 } : {}) },
        allowedIps: p.subnet.prefix !== 0 ? [p.subnet] : [],
        allowedIps6: p.subnet6 !== undefined ? [p.subnet6] : [],
      };
      byKey.set(p.publicKey, { peer, endpoint });
      endpoints.set(endpoint, p.publicKey);
      out.push(peer);
    }
    return { peers: out, conflicts };
  }
}

export function describePeer(p: WgLeasePeer): Record<string, unknown> {
  return {
    subnet: formatCidr(p.subnet),
    ...(p.subnet6 !== undefined ? { subnet6: formatCidr6(p.subnet6) } : {}),
    publicKey: p.publicKey,
    endpoint: formatEndpoint(p.ip, p.ip6, p.port),
  };
}
