/**
 * The facade's batch operations: many routes / neighbors / FDB entries with
 * at most one dump of the kernel's table and the change requests pipelined on
 * the one socket (each sent with NLM_F_ACK; up to WINDOW requests in flight,
 * acks matched by sequence number), instead of one dump and one round trip
 * per object. 5,000 peers: one dump plus 5,000 pipelined requests.
 *
 * ensure* (with a dump): matching state is left alone, wrong state replaced,
 * a Rudder route to the same dst at another metric removed, one remote per
 * FDB MAC. EnsureOptions.dump false: CREATE|REPLACE without a read.
 * Every item gets its own result: `{ changed }` or `{ changed: false, error }`,
 * so one rejected object never hides the others. Each operation is written
 * once for both address families (the family object picks the request's
 * family and how addresses compare).
 */
import type { Conn } from './conn';
import type { NetFamily } from './family';
import { deleteFdb, ensureFdbAgainst, listFdb, listNeighbors, removeNeighbor, replaceFdb, replaceNeighbor } from './neigh';
import { deleteRoute, ensureAgainst, listRoutes, normalise, newRouteRequest, type RouteFamily } from './routes';
import { RTN_UNICAST, type RouteInfoOf, type RouteSpecOf, type BatchResult, type EnsureOptions, type FdbSpecOf, type NeighborKeyOf, type NeighborSpecOf, type RouteKeyOf } from './types';

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

type Fam<A extends number | bigint> = RouteFamily<A, RouteInfoOf<A>>;

const dstKey = <A extends number | bigint>(fam: Fam<A>, table: number, dst: { ip: A; prefix: number }): string => `${table}|${fam.key(dst.ip)}/${dst.prefix}`;

/** With a dump (the default) or without one (`opts.dump` false: setRoutes). */
export function ensureRoutes<A extends number | bigint>(c: Conn, fam: Fam<A>, specs: ReadonlyArray<RouteSpecOf<A>>, opts?: EnsureOptions): Promise<BatchResult[]> {
  return opts?.dump === false ? setRoutes(c, fam, specs) : ensureRoutesDumped(c, fam, specs);
}

async function ensureRoutesDumped<A extends number | bigint>(c: Conn, fam: Fam<A>, specs: ReadonlyArray<RouteSpecOf<A>>): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const norm = specs.map((s) => normalise(fam, s));
  const byDst = new Map<string, Array<RouteInfoOf<A>>>();
  for (const table of new Set(norm.map((n) => n.table))) {
    for (const r of await listRoutes(c, fam, { table })) {
      if (r.type !== RTN_UNICAST) continue;
      const k = dstKey(fam, r.table, r.dst);
      const l = byDst.get(k);
      if (l) l.push(r);
      else byDst.set(k, [r]);
    }
  }
  return pipelined(norm, (n) => ensureAgainst(c, fam, n, byDst.get(dstKey(fam, n.table, n.dst)) ?? []));
}

/**
 * Writes routes without reading the table first: one RTM_NEWROUTE with
 * NLM_F_CREATE|NLM_F_REPLACE each (idempotent on the kernel's key
 * dst/table/metric: a matching route is rewritten identically, a wrong one
 * replaced). For callers that already know what the kernel holds (a plan
 * made from a dump, or a backend applying a lease event to state it
 * programmed itself); stale copies at other metrics are the reconcile's.
 */
function setRoutes<A extends number | bigint>(c: Conn, fam: Fam<A>, specs: ReadonlyArray<RouteSpecOf<A>>): Promise<BatchResult[]> {
  return pipelined(specs, async (s) => {
    await newRouteRequest(c, fam, normalise(fam, s));
    return true;
  });
}

export function deleteRoutes<A extends number | bigint>(c: Conn, fam: Fam<A>, keys: ReadonlyArray<RouteKeyOf<A>>): Promise<BatchResult[]> {
  return pipelined(keys, (k) => deleteRoute(c, fam, k));
}

/** Permanent neighbors: with a dump, those already there are left alone; without, all written (CREATE|REPLACE, see setRoutes). */
export function ensureNeighbors<A extends number | bigint>(c: Conn, fam: NetFamily<A>, specs: ReadonlyArray<NeighborSpecOf<A>>, opts?: EnsureOptions): Promise<BatchResult[]> {
  if (opts?.dump === false) {
    return pipelined(specs, async (s) => {
      await replaceNeighbor(c, fam, s, s.mac.toLowerCase());
      return true;
    });
  }
  return ensureNeighborsDumped(c, fam, specs);
}

async function ensureNeighborsDumped<A extends number | bigint>(c: Conn, fam: NetFamily<A>, specs: ReadonlyArray<NeighborSpecOf<A>>): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const have = new Set<string>();
  for (const index of new Set(specs.map((s) => s.index))) {
    for (const n of await listNeighbors(c, fam, index)) if (n.permanent) have.add(`${index}|${fam.key(n.ip)}|${n.mac}`);
  }
  return pipelined(specs, async (s) => {
    const mac = s.mac.toLowerCase();
    if (have.has(`${s.index}|${fam.key(s.ip)}|${mac}`)) return false;
    await replaceNeighbor(c, fam, s, mac);
    return true;
  });
}

export function deleteNeighbors<A extends number | bigint>(c: Conn, fam: NetFamily<A>, keys: ReadonlyArray<NeighborKeyOf<A>>): Promise<BatchResult[]> {
  return pipelined(keys, (k) => removeNeighbor(c, fam, k));
}

/**
 * One remote per MAC: with a dump, the wanted remote is set and
 * other remotes of that MAC removed; without, each entry is written
 * (CREATE|REPLACE: for a unicast MAC the VXLAN driver replaces the entry's
 * first remote, so a moved peer's MAC points at its new address; see setRoutes).
 */
export function ensureFdbs<A extends number | bigint>(c: Conn, fam: NetFamily<A>, specs: ReadonlyArray<FdbSpecOf<A>>, opts?: EnsureOptions): Promise<BatchResult[]> {
  if (opts?.dump === false) {
    return pipelined(specs, async (s) => {
      await replaceFdb(c, fam, s, s.mac.toLowerCase());
      return true;
    });
  }
  return ensureFdbsDumped(c, fam, specs);
}

async function ensureFdbsDumped<A extends number | bigint>(c: Conn, fam: NetFamily<A>, specs: ReadonlyArray<FdbSpecOf<A>>): Promise<BatchResult[]> {
  if (specs.length === 0) return [];
  const byMac = new Map<string, Array<FdbSpecOf<A>>>();
  for (const index of new Set(specs.map((s) => s.index))) {
    for (const f of await listFdb(c, fam, index)) {
      const k = `${index}|${f.mac}`;
      const l = byMac.get(k);
      if (l) l.push(f);
      else byMac.set(k, [f]);
    }
  }
  return pipelined(specs, (s) => {
    const mac = s.mac.toLowerCase();
    return ensureFdbAgainst(c, fam, s, mac, byMac.get(`${s.index}|${mac}`) ?? []);
  });
}

export function deleteFdbs<A extends number | bigint>(c: Conn, fam: NetFamily<A>, specs: ReadonlyArray<FdbSpecOf<A>>): Promise<BatchResult[]> {
  return pipelined(specs, (s) => deleteFdb(c, fam, s));
}
