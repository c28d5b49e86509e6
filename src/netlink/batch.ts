/**
 * The facade's batch operations: many routes / neighbors / FDB entries with
 * at most one dump of the kernel's table and the change requests pipelined on
 * the one socket (each sent with NLM_F_ACK; up to WINDOW requests in flight,
 * acks matched by sequence number), instead of one dump and one round trip
 * per object. 5,000 peers: one dump plus 5,000 pipelined requests.
 *
 * ensure* (with a dump): matching state is left alone, wrong state replaced,
 * a Rudder route to the same dst at another metric removed, one remote per
 * FDB MAC. set* (EnsureOptions.dump false): CREATE|REPLACE without a read.
 * Every item gets its own result: `{ changed }` or `{ changed: false, error }`,
 * so one rejected object never hides the others.
 */
import type { Conn } from './conn';
import { deleteFdb6, ensureFdb6Against, listFdb6, listNeighbors6, removeNeighbor6, replaceFdb6, replaceNeighbor6 } from './neigh';
import type { Fdb6Spec, Neighbor6Key, Neighbor6Spec } from './types';
import { deleteFdb, ensureFdbAgainst, listFdb, listNeighbors, removeNeighbor, replaceFdb, replaceNeighbor } from './neigh';
import { deleteRoute, ensureAgainst, listRoutes, normalise, newRouteRequest } from './routes';
import { deleteRoute6, ensureAgainst6, listRoutes6, newRoute6Request, normalise6 } from './routes6';
import {
  RTN_UNICAST,
  type BatchResult,
  type FdbSpec,
  type NeighborKey,
  type NeighborSpec,
  type Route6Info,
  type Route6Key,
  type Route6Spec,
  type RouteInfo,
  type RouteKey,
  type RouteSpec,
} from './types';

/** Requests in flight at once: well inside the socket's receive buffer for the acks. */
export const WINDOW = 128;

/** Runs fn over items with at most `window` in flight; results in item order, never rejects. */
export async function pipelined<T>(items: readonly T[], fn: (item: T) => Promise<boolean>, window = WINDOW): Promise<BatchResult[]> {
  const out = new Array<BatchResult>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { changed: await fn(items[i] as T) };
      } catch (e) {
        out[i] = { changed: false, error: e instanceof Error ? e : new Error(String(e)) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, worker));
  return out;
}

const dstKey = (table: number, ip: number | bigint, prefix: number): string => `${table}|${typeof ip === 'number' ? ip >>> 0 : ip}/${prefix}`;

export async function ensureRoutes(c: Conn, specs: readonly RouteSpec[]): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const norm = specs.map(normalise);
  const byDst = new Map<string, RouteInfo[]>();
  for (const table of new Set(norm.map((n) => n.table))) {
    for (const r of await listRoutes(c, { table })) {
      if (r.type !== RTN_UNICAST) continue;
      const k = dstKey(r.table, r.dst.ip, r.dst.prefix);
      const l = byDst.get(k);
      if (l) l.push(r);
      else byDst.set(k, [r]);
    }
  }
  return pipelined(norm, (n) => ensureAgainst(c, n, byDst.get(dstKey(n.table, n.dst.ip, n.dst.prefix)) ?? []));
}

/**
 * Writes routes without reading the table first: one RTM_NEWROUTE with
 * NLM_F_CREATE|NLM_F_REPLACE each (idempotent on the kernel's key
 * dst/table/metric: a matching route is rewritten identically, a wrong one
 * replaced). For callers that already know what the kernel holds (a plan
 * made from a dump, or a backend applying a lease event to state it
 * programmed itself); stale copies at other metrics are the reconcile's.
 */
export function setRoutes(c: Conn, specs: readonly RouteSpec[]): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await newRouteRequest(c, normalise(s));
    return true;
  });
}

export function deleteRoutes(c: Conn, keys: readonly RouteKey[]): Promise<BatchResult[]> {
  return pipelined(keys, (k) => deleteRoute(c, k));
}

/** ensureRoutes for IPv6 routes. */
export async function ensureRoutes6(c: Conn, specs: readonly Route6Spec[]): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const norm = specs.map(normalise6);
  const byDst = new Map<string, Route6Info[]>();
  for (const table of new Set(norm.map((n) => n.table))) {
    for (const r of await listRoutes6(c, { table })) {
      if (r.type !== RTN_UNICAST) continue;
      const k = dstKey(r.table, r.dst.ip, r.dst.prefix);
      const l = byDst.get(k);
      if (l) l.push(r);
      else byDst.set(k, [r]);
    }
  }
  return pipelined(norm, (n) => ensureAgainst6(c, n, byDst.get(dstKey(n.table, n.dst.ip, n.dst.prefix)) ?? []));
}

/** setRoutes for IPv6 routes. */
export function setRoutes6(c: Conn, specs: readonly Route6Spec[]): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await newRoute6Request(c, normalise6(s));
    return true;
  });
}

export function deleteRoutes6(c: Conn, keys: readonly Route6Key[]): Promise<BatchResult[]> {
  return pipelined(keys, (k) => deleteRoute6(c, k));
}

export async function ensureNeighbors(c: Conn, specs: readonly NeighborSpec[]): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const have = new Set<string>();
  for (const index of new Set(specs.map((s) => s.index))) {
    for (const n of await listNeighbors(c, index)) if (n.permanent) have.add(`${index}|${n.ip >>> 0}|${n.mac}`);
  }
  return pipelined(specs, async (s) => {
    const mac = s.mac.toLowerCase();
    if (have.has(`${s.index}|${s.ip >>> 0}|${mac}`)) return false;
    await replaceNeighbor(c, s, mac);
    return true;
  });
}

/** Permanent neighbors written without a dump (CREATE|REPLACE): see setRoutes. */
export function setNeighbors(c: Conn, specs: readonly NeighborSpec[]): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await replaceNeighbor(c, s, s.mac.toLowerCase());
    return true;
  });
}

export function deleteNeighbors(c: Conn, keys: readonly NeighborKey[]): Promise<BatchResult[]> {
  return pipelined(keys, (k) => removeNeighbor(c, k));
}

/**
 * FDB entries written without a dump (CREATE|REPLACE: for a unicast MAC the
 * VXLAN driver replaces the entry's first remote, so a moved peer's MAC
 * points at its new address); see setRoutes.
 */
export function setFdbs(c: Conn, specs: readonly FdbSpec[]): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await replaceFdb(c, s, s.mac.toLowerCase());
    return true;
  });
}

/** One remote per MAC, as ensureFdb: the wanted remote is set, other remotes of that MAC removed. */
export async function ensureFdbs(c: Conn, specs: readonly FdbSpec[]): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const byMac = new Map<string, FdbSpec[]>();
  for (const index of new Set(specs.map((s) => s.index))) {
    for (const f of await listFdb(c, index)) {
      const k = `${index}|${f.mac}`;
      const l = byMac.get(k);
      if (l) l.push(f);
      else byMac.set(k, [f]);
    }
  }
  return pipelined(specs, (s) => {
    const mac = s.mac.toLowerCase();
    return ensureFdbAgainst(c, s, mac, byMac.get(`${s.index}|${mac}`) ?? []);
  });
}

export function deleteFdbs(c: Conn, specs: readonly FdbSpec[]): Promise<BatchResult[]> {
  return pipelined(specs, (s) => deleteFdb(c, s));
}


// IPv6 neighbors and FDB entries with an IPv6 remote: the same rules.

export async function ensureNeighbors6(c: Conn, specs: readonly Neighbor6Spec[]): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const have = new Set<string>();
  for (const index of new Set(specs.map((s) => s.index))) {
    for (const n of await listNeighbors6(c, index)) if (n.permanent) have.add(`${index}|${n.ip}|${n.mac}`);
  }
  return pipelined(specs, async (s) => {
    const mac = s.mac.toLowerCase();
    if (have.has(`${s.index}|${s.ip}|${mac}`)) return false;
    await replaceNeighbor6(c, s, mac);
    return true;
  });
}

export function setNeighbors6(c: Conn, specs: readonly Neighbor6Spec[]): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await replaceNeighbor6(c, s, s.mac.toLowerCase());
    return true;
  });
}

export function deleteNeighbors6(c: Conn, keys: readonly Neighbor6Key[]): Promise<BatchResult[]> {
  return pipelined(keys, (k) => removeNeighbor6(c, k));
}

export function setFdbs6(c: Conn, specs: readonly Fdb6Spec[]): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await replaceFdb6(c, s, s.mac.toLowerCase());
    return true;
  });
}

export async function ensureFdbs6(c: Conn, specs: readonly Fdb6Spec[]): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const byMac = new Map<string, Fdb6Spec[]>();
  for (const index of new Set(specs.map((s) => s.index))) {
    for (const f of await listFdb6(c, index)) {
      const k = `${index}|${f.mac}`;
      const l = byMac.get(k);
      if (l) l.push(f);
      else byMac.set(k, [f]);
    }
  }
  return pipelined(specs, (s) => {
    const mac = s.mac.toLowerCase();
    return ensureFdb6Against(c, s, mac, byMac.get(`${s.index}|${mac}`) ?? []);
  });
}

export function deleteFdbs6(c: Conn, specs: readonly Fdb6Spec[]): Promise<BatchResult[]> {
  return pipelined(specs, (s) => deleteFdb6(c, s));
}
