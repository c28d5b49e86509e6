/**
 * The udp backend's peer table (pure): lease events in, the complete
 * data-plane route table and what changed out.
 */
import { cidrToKey, formatCidr, formatIp } from '../../ip/ipv4';
import type { DataPlaneRoute } from '../../dataplane/types';
import type { Lease, LeaseEvent } from '../../subnet/lease';

export const DEFAULT_UDP_PORT = 8285;

function validPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/**
 * The port a peer listens on: its published BackendData.Port, else the
 * network's port (every host that did not override -port uses that one).
 */
export function peerPort(lease: Lease, networkPort: number): number {
  const p = lease.backendData['Port'];
  return validPort(p) ? p : networkPort;
}

export interface TableChange {
  readonly set: readonly DataPlaneRoute[];
  readonly removed: readonly DataPlaneRoute[];
  /** Leases of another backend type, seen for the first time in this batch. */
  readonly ignored: readonly Lease[];
}

const sameRoute = (a: DataPlaneRoute, b: DataPlaneRoute): boolean =>
  a.ip === b.ip && a.prefix === b.prefix && a.publicIP === b.publicIP && a.port === b.port;

export function describeRoute(r: DataPlaneRoute): string {
  return `${formatCidr(r)} → ${formatIp(r.publicIP)}:${r.port}`;
}

export class PeerTable {
  private readonly routes = new Map<string, DataPlaneRoute>();
  /** subnet key → backend type already warned about, so a foreign lease is logged once. */
  private readonly warned = new Map<string, string>();

  constructor(
    private readonly networkPort: number,
    private readonly own: Lease,
  ) {}

  /** Applies a batch; returns the routes that were set (new or changed) and removed. */
  apply(events: readonly LeaseEvent[]): TableChange {
    const before = new Map(this.routes);
    const ignored: Lease[] = [];
    for (const ev of events) {
      const key = cidrToKey(ev.lease.subnet);
      if (key === cidrToKey(this.own.subnet)) continue; // never route our own subnet to the network
      if (ev.type === 'removed') {
        this.routes.delete(key);
        this.warned.delete(key);
        continue;
      }
      const l = ev.lease;
      if (l.backendType !== 'udp') {
        // A peer on another backend cannot decapsulate our datagrams: no route beats a black hole.
        this.routes.delete(key);
        if (this.warned.get(key) !== l.backendType) {
          this.warned.set(key, l.backendType);
          ignored.push(l);
        }
        continue;
      }
      this.warned.delete(key);
      this.routes.set(key, { ip: l.subnet.ip, prefix: l.subnet.prefix, publicIP: l.publicIP, port: peerPort(l, this.networkPort) });
    }
    const set: DataPlaneRoute[] = [];
    const removed: DataPlaneRoute[] = [];
    for (const [k, r] of this.routes) {
      const old = before.get(k);
      if (old === undefined || !sameRoute(old, r)) set.push(r);
    }
    for (const [k, r] of before) if (!this.routes.has(k)) removed.push(r);
    return { set, removed, ignored };
  }

  /** The complete table, in a stable order (by subnet address). */
  table(): DataPlaneRoute[] {
    return [...this.routes.values()].sort((a, b) => a.ip - b.ip || a.prefix - b.prefix);
  }
}
