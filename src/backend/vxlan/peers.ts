/**
 * The vxlan backend's pure logic: the VTEP MAC, the peer table (lease events
 * in, peers added/removed out) and the plans that turn peers into ordered
 * kernel steps. No I/O here, so every rule is unit-tested with plain data.
 *
 * Per remote lease three kernel objects, programmed in this order and undone
 * in reverse:
 *   neighbor  remote lease network address → remote VTEP MAC   (on rudder.<VNI>)
 *   fdb       remote VTEP MAC → remote PublicIP                 (on rudder.<VNI>)
 *   route     remote subnet via remote network address, onlink  (dev rudder.<VNI>)
 * The route goes last so the kernel never sends into an unresolved next hop,
 * and first on removal for the same reason.
 */
import { createHash } from 'node:crypto';
import { cidrToKey, formatCidr, formatIp, type Cidr } from '../../ip/ipv4';
import type { Lease } from '../../subnet/lease';
import { PeerTable, bySubnet, type PeerChange, type PeerRules } from '../peers';
import { TABLE_MAIN, type FdbSpec, type NeighborSpec, type RouteInfo } from '../../netlink/types';

export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * This host's VTEP MAC, derived from its PublicIP and the VNI: stable across
 * restarts, crashes and a deleted device without any state file, and unique
 * per host (PublicIPs are unique in a cluster). Locally administered unicast
 * (first octet xxxxxx10), so it can never equal a vendor-assigned MAC.
 */
export function vtepMac(publicIP: number, vni: number): string {
  const h = createHash('sha256').update(`rudder-vtep/${vni}/${formatIp(publicIP)}`).digest();
  const b = [...h.subarray(0, 6)];
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** A lease's VTEP MAC in canonical form, or null if BackendData has none or a malformed one. */
export function leaseMac(l: Lease): string | null {
  const v = l.backendData['VtepMAC'];
  if (typeof v !== 'string') return null;
  const m = v.toLowerCase();
  return MAC_RE.test(m) ? m : null;
}

export interface VxlanPeer {
  /** Lease key form of the subnet (10.0.5.0-24). */
  readonly key: string;
  readonly subnet: Cidr;
  readonly publicIP: number;
  readonly mac: string;
}

/** The next hop of a peer's route, and its neighbor entry's address: the peer's network address. */
export const peerVtepIp = (p: VxlanPeer): number => p.subnet.ip;

const samePeer = (a: VxlanPeer, b: VxlanPeer): boolean => a.publicIP === b.publicIP && a.mac === b.mac;

/** The peer table's rules for vxlan: a lease with a valid VtepMAC is a VTEP. */
const RULES: PeerRules<VxlanPeer> = {
  backendType: 'vxlan',
  // Only leases with an IPv4 subnet reach this table (the backend filters): a route's destination finds its peer.
  keyOf: (l) => cidrToKey(l.subnet),
  peer(l, key) {
    const mac = leaseMac(l);
    return mac === null ? `mac ${JSON.stringify(l.backendData['VtepMAC'])}` : { key, subnet: l.subnet, publicIP: l.publicIP, mac };
  },
  same: samePeer,
};

export type { PeerChange } from '../peers';

/** Whether some current peer still needs a kernel entry that a removed peer also used. */
export interface PeerUse<A = number> {
  usesFdb(mac: string, publicIP: A): boolean;
  usesVtep(ip: A): boolean;
}

const fdbKey = (mac: string, publicIP: number): string => `${mac}@${publicIP >>> 0}`;

/** PeerUse over a list (tests, one-off callers); the table keeps counts instead. */
export function peerUse(peers: readonly VxlanPeer[]): PeerUse {
  const fdb = new Set(peers.map((p) => fdbKey(p.mac, p.publicIP)));
  const vtep = new Set(peers.map((p) => peerVtepIp(p) >>> 0));
  return { usesFdb: (mac, ip) => fdb.has(fdbKey(mac, ip)), usesVtep: (ip) => vtep.has(ip >>> 0) };
}

function bump<K>(m: Map<K, number>, k: K, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

export class VxlanPeerTable extends PeerTable<VxlanPeer> implements PeerUse {
  /**
   * How many current peers use each FDB entry (MAC, PublicIP) and VTEP address: a removal
   * asks whether another peer still needs them in O(1), not by copying and scanning every peer.
   */
  private readonly fdbUse = new Map<string, number>();
  private readonly vtepUse = new Map<number, number>();
  /** VTEP (network) address → peer, and VTEP MAC → peer: to judge kernel notifications in O(1). */
  private readonly vteps = new Map<number, VxlanPeer>();
  private readonly macs = new Map<string, VxlanPeer>();

  constructor(own: Cidr) {
    super(own, RULES);
  }

  protected override placed(p: VxlanPeer, old: VxlanPeer | undefined): void {
    if (old !== undefined) this.dropped(old);
    bump(this.fdbUse, fdbKey(p.mac, p.publicIP), 1);
    bump(this.vtepUse, peerVtepIp(p) >>> 0, 1);
    this.vteps.set(peerVtepIp(p) >>> 0, p);
    this.macs.set(p.mac, p);
  }

  protected override dropped(p: VxlanPeer): void {
    bump(this.fdbUse, fdbKey(p.mac, p.publicIP), -1);
    bump(this.vtepUse, peerVtepIp(p) >>> 0, -1);
    if (this.vteps.get(peerVtepIp(p) >>> 0) === p) this.vteps.delete(peerVtepIp(p) >>> 0);
    if (this.macs.get(p.mac) === p) this.macs.delete(p.mac);
  }

  usesFdb(mac: string, publicIP: number): boolean {
    return this.fdbUse.has(fdbKey(mac, publicIP));
  }

  usesVtep(ip: number): boolean {
    return this.vtepUse.has(ip >>> 0);
  }

  /** The peer whose VTEP address (neighbor entry, route next hop) is `ip`. */
  byVtep(ip: number): VxlanPeer | undefined {
    return this.vteps.get(ip >>> 0);
  }

  /** A peer with this VTEP MAC (the latest programmed, if several share it). */
  byMac(mac: string): VxlanPeer | undefined {
    return this.macs.get(mac);
  }

  /** Current peers, in a stable order (by subnet address). */
  list(): VxlanPeer[] {
    return bySubnet(this.values());
  }
}

// ---------------------------------------------------------------------------
// Kernel steps

export type VxlanStep =
  | { readonly kind: 'add-neigh'; readonly ip: number; readonly mac: string }
  | { readonly kind: 'add-fdb'; readonly mac: string; readonly dst: number }
  | { readonly kind: 'add-route'; readonly dst: Cidr; readonly via: number }
  | { readonly kind: 'del-route'; readonly dst: Cidr; readonly table: number; readonly metric: number; readonly oif?: number; readonly gateway?: number }
  | { readonly kind: 'del-fdb'; readonly mac: string; readonly dst: number }
  | { readonly kind: 'del-neigh'; readonly ip: number };

export function describeStep(s: VxlanStep): string {
  switch (s.kind) {
    case 'add-neigh':
      return `neighbor ${formatIp(s.ip)} lladdr ${s.mac}`;
    case 'add-fdb':
      return `fdb ${s.mac} dst ${formatIp(s.dst)}`;
    case 'add-route':
      return `route ${formatCidr(s.dst)} via ${formatIp(s.via)} onlink`;
    case 'del-route':
      return `delete route ${formatCidr(s.dst)}${s.gateway !== undefined ? ` via ${formatIp(s.gateway)}` : ''}${s.oif !== undefined ? ` oif ${s.oif}` : ''}`;
    case 'del-fdb':
      return `delete fdb ${s.mac} dst ${formatIp(s.dst)}`;
    case 'del-neigh':
      return `delete neighbor ${formatIp(s.ip)}`;
  }
}

export function programSteps(p: VxlanPeer): VxlanStep[] {
  return [
    { kind: 'add-neigh', ip: peerVtepIp(p), mac: p.mac },
    { kind: 'add-fdb', mac: p.mac, dst: p.publicIP },
    { kind: 'add-route', dst: p.subnet, via: peerVtepIp(p) },
  ];
}

/**
 * Undoes one peer in reverse order. An FDB entry or neighbor another current
 * peer still needs (a host that moved to a new subnet keeps its MAC and
 * PublicIP; events may arrive in separate batches) is left alone.
 */
export function unprogramSteps(p: VxlanPeer, devIndex: number, remaining: PeerUse): VxlanStep[] {
  const steps: VxlanStep[] = [{ kind: 'del-route', dst: p.subnet, table: TABLE_MAIN, metric: 0, oif: devIndex, gateway: peerVtepIp(p) }];
  if (!remaining.usesFdb(p.mac, p.publicIP)) steps.push({ kind: 'del-fdb', mac: p.mac, dst: p.publicIP });
  if (!remaining.usesVtep(peerVtepIp(p))) steps.push({ kind: 'del-neigh', ip: peerVtepIp(p) });
  return steps;
}

/** Steps that remove every one of `peers` (stop): routes, then each FDB entry and neighbor once. */
export function stopSteps(peers: readonly VxlanPeer[], devIndex: number): VxlanStep[] {
  const fdb = new Set<string>();
  const neigh = new Set<number>();
  const routes: VxlanStep[] = [];
  const rest: VxlanStep[] = [];
  for (const p of peers) {
    routes.push({ kind: 'del-route', dst: p.subnet, table: TABLE_MAIN, metric: 0, oif: devIndex, gateway: peerVtepIp(p) });
    const f = `${p.mac}@${p.publicIP >>> 0}`;
    if (!fdb.has(f)) {
      fdb.add(f);
      rest.push({ kind: 'del-fdb', mac: p.mac, dst: p.publicIP });
    }
    if (!neigh.has(peerVtepIp(p) >>> 0)) {
      neigh.add(peerVtepIp(p) >>> 0);
      rest.push({ kind: 'del-neigh', ip: peerVtepIp(p) });
    }
  }
  return [...routes, ...rest];
}

/** Steps for one batch: every removal (reverse order) before any addition. */
export function changeSteps(ch: Pick<PeerChange<VxlanPeer>, 'added' | 'removed'>, devIndex: number, current: PeerUse): VxlanStep[] {
  return [...ch.removed.flatMap((p) => unprogramSteps(p, devIndex, current)), ...ch.added.flatMap(programSteps)];
}

export interface VxlanKernelState {
  /** RTPROT_RUDDER routes of the main table (any device). */
  readonly routes: readonly RouteInfo[];
  /** Neighbors on the VXLAN device. */
  readonly neighbors: readonly NeighborSpec[];
  /** FDB entries (with a remote) on the VXLAN device. */
  readonly fdb: readonly FdbSpec[];
}

/**
 * What makes the kernel match `peers` exactly: stale objects removed (routes,
 * then FDB, then neighbors), missing ones added per peer (neighbor, FDB,
 * route). Routes elsewhere (another device, another backend's shape) are
 * stale too: every Rudder-protocol route in the main table is this backend's.
 */
export function planReconcile(peers: readonly VxlanPeer[], have: VxlanKernelState, devIndex: number): VxlanStep[] {
  const del: VxlanStep[] = [];
  const byKey = new Map(peers.map((p) => [cidrToKey(p.subnet), p]));
  const routeOk = new Set<string>();
  for (const r of have.routes) {
    const k = cidrToKey(r.dst);
    const p = byKey.get(k);
    const ok = p !== undefined && r.oif === devIndex && r.gateway === peerVtepIp(p) && r.onlink && r.metric === 0 && !routeOk.has(k);
    if (ok) routeOk.add(k);
    else del.push({ kind: 'del-route', dst: r.dst, table: r.table, metric: r.metric, ...(r.oif !== undefined ? { oif: r.oif } : {}), ...(r.gateway !== undefined ? { gateway: r.gateway } : {}) });
  }
  const wantFdb = new Set(peers.map((p) => `${p.mac}@${p.publicIP >>> 0}`));
  const byVtep = new Map<number, VxlanPeer>();
  for (const p of peers) if (!byVtep.has(peerVtepIp(p) >>> 0)) byVtep.set(peerVtepIp(p) >>> 0, p);
  const fdbOk = new Set<string>();
  for (const f of have.fdb) {
    const k = `${f.mac}@${f.dst >>> 0}`;
    if (wantFdb.has(k)) fdbOk.add(k);
    else del.push({ kind: 'del-fdb', mac: f.mac, dst: f.dst });
  }
  const neighOk = new Set<number>();
  for (const n of have.neighbors) {
    const p = byVtep.get(n.ip >>> 0);
    if (p !== undefined && p.mac === n.mac) neighOk.add(n.ip >>> 0);
    // A wrong MAC for a peer's address is replaced by add-neigh below; anything else goes.
    else if (p === undefined) del.push({ kind: 'del-neigh', ip: n.ip });
  }
  const order = { 'del-route': 0, 'del-fdb': 1, 'del-neigh': 2 } as Record<string, number>;
  del.sort((a, b) => (order[a.kind] ?? 0) - (order[b.kind] ?? 0));
  const add: VxlanStep[] = [];
  for (const p of peers) {
    for (const s of programSteps(p)) {
      if (s.kind === 'add-neigh' && neighOk.has(s.ip >>> 0)) continue;
      if (s.kind === 'add-fdb' && fdbOk.has(`${s.mac}@${s.dst >>> 0}`)) continue;
      if (s.kind === 'add-route' && routeOk.has(cidrToKey(s.dst))) continue;
      add.push(s);
    }
  }
  return [...del, ...add];
}
