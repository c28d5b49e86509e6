/**
 * The peer table every backend keeps (pure): lease events in, one desired
 * peer per lease key out, and per batch what changed. What a peer is — a
 * data-plane route, a gateway route, a VTEP — is the backend's `PeerRules`;
 * the rules shared by all are here: never our own subnet, only leases of the
 * backend's own type, a lease of another type (or one the backend cannot
 * use) reported once until it changes, and a batch's net change per key.
 *
 * A batch costs O(events): only the keys it touches are compared, never
 * every peer (at 5,000 peers, copying or scanning the table per lease event
 * was most of a backend's CPU under churn).
 */
import type { Cidr } from '../ip/ipv4';
import type { PrefixOf } from '../ip/family';
import type { Logger } from '../log';
import { formatLeaseKey, leaseName, type Lease, type LeaseEvent, type LeaseSubnets } from '../subnet/lease';

export interface PeerChange<P> {
  /** Peers to unprogram: gone, or changed (the old version). */
  readonly removed: readonly P[];
  /** Peers to program: new, or changed (the new version). */
  readonly added: readonly P[];
  /** Leases of another backend type, first seen in this batch (logged once). */
  readonly ignored: readonly Lease[];
  /** Leases of this backend's type it cannot use (say, without a VtepMAC), first seen in this batch. */
  readonly invalid: readonly Lease[];
}

/** What a backend's peer is. */
export interface PeerRules<P extends object> {
  /** Lease BackendType this backend programs. */
  readonly backendType: string;
  /** The peer a lease of this backend's type describes, or why it cannot be used (a string). */
  peer(lease: Lease, key: string): P | string;
  /** Whether two versions of a key's peer need the same kernel state (then nothing changes). */
  same(a: P, b: P): boolean;
  /**
   * The table's key of a lease; default the whole lease key. A table that
   * only ever sees leases with an IPv4 subnet may key by that subnet
   * (`10.0.5.0-24`) to find peers by a route's destination.
   */
  readonly keyOf?: (l: LeaseSubnets) => string;
}

export class PeerTable<P extends object> {
  private readonly peers = new Map<string, P>();
  /** subnet key → why it was reported, so each unusable lease is logged once. */
  private readonly warned = new Map<string, string>();
  private readonly ownKey: string;

  /**
   * `own`: this host's lease (its subnets), or its IPv4 subnet. Peers are
   * keyed by the whole lease key (`10.0.5.0-24`, `10.0.5.0-24&fd00:0:0:5::-64`,
   * `0.0.0.0-0&fd00:0:0:5::-64`), so IPv6-only leases, whose IPv4 part is
   * always 0.0.0.0/0, are told apart; unless the rules key otherwise (`keyOf`).
   */
  constructor(
    own: Cidr | LeaseSubnets,
    private readonly rules: PeerRules<P>,
  ) {
    this.ownKey = this.keyOf('subnet' in own ? own : { subnet: own });
  }

  private keyOf(l: LeaseSubnets): string {
    return this.rules.keyOf !== undefined ? this.rules.keyOf(l) : formatLeaseKey(l);
  }

  apply(events: readonly LeaseEvent[]): PeerChange<P> {
    // Each touched key's peer before this batch, so several events for one key report the net change.
    const before = new Map<string, P | undefined>();
    const ignored: Lease[] = [];
    const invalid: Lease[] = [];
    const unusable = (key: string, why: string, l: Lease, into: Lease[]): void => {
      this.drop(key);
      if (this.warned.get(key) !== why) into.push(l);
      this.warned.set(key, why);
    };
    for (const ev of events) {
      const l = ev.lease;
      const key = this.keyOf(l);
      if (key === this.ownKey) continue; // never program our own subnet
      if (!before.has(key)) before.set(key, this.peers.get(key));
      if (ev.type === 'removed') {
        this.drop(key);
        this.warned.delete(key);
        continue;
      }
      // A peer on another backend cannot take our traffic: no route beats a black hole.
      if (l.backendType !== this.rules.backendType) {
        unusable(key, `type ${l.backendType}`, l, ignored);
        continue;
      }
      const p = this.rules.peer(l, key);
      if (typeof p === 'string') {
        unusable(key, p, l, invalid);
        continue;
      }
      this.warned.delete(key);
      const old = this.peers.get(key);
      if (old !== undefined && this.rules.same(old, p)) continue;
      this.peers.set(key, p);
      this.placed(p, old);
    }
    const removed: P[] = [];
    const added: P[] = [];
    for (const [k, old] of before) {
      const now = this.peers.get(k);
      if (old === now) continue;
      if (old !== undefined && (now === undefined || !this.rules.same(old, now))) removed.push(old);
      if (now !== undefined && (old === undefined || !this.rules.same(old, now))) added.push(now);
    }
    return { removed, added, ignored, invalid };
  }

  get(key: string): P | undefined {
    return this.peers.get(key);
  }

  get size(): number {
    return this.peers.size;
  }

  /** Current peers, in no particular order. */
  values(): IterableIterator<P> {
    return this.peers.values();
  }

  /** `p` became the peer of its key, replacing `old` (if any): for indexes a backend keeps. */
  protected placed(_p: P, _old: P | undefined): void {}

  /** `p` is no longer a peer (and nothing replaced it). */
  protected dropped(_p: P): void {}

  private drop(key: string): void {
    const p = this.peers.get(key);
    if (p === undefined) return;
    this.peers.delete(key);
    this.dropped(p);
  }
}

/** Logs the leases of another backend a batch reported (each once: the table reports them once). */
export function logIgnored(log: Logger, leases: readonly Lease[]): void {
  for (const l of leases) log.warn('ignoring lease of another backend', { subnet: leaseName(l), backend: l.backendType, key: formatLeaseKey(l) });
}

/** Peers with a subnet (either family), by subnet address then prefix length (a stable order for plans and logs). */
export function bySubnet<A extends number | bigint, P extends { readonly subnet: PrefixOf<A> }>(peers: Iterable<P>): P[] {
  return [...peers].sort((a, b) => (a.subnet.ip < b.subnet.ip ? -1 : a.subnet.ip > b.subnet.ip ? 1 : a.subnet.prefix - b.subnet.prefix));
}
