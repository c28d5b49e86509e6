/**
 * The batch operations of a netlink-shaped object that may not have them
 * (a test's fake implements only the single operations): the batch method
 * when present, else the single one item by item, in order, with the same
 * per-item results.
 */
import type { BatchResult, FdbSpec, Netlink, NeighborKey, NeighborSpec, RouteKey, RouteSpec } from './types';

export type BatchOps = Pick<Netlink, 'ensureRoutes' | 'deleteRoutes' | 'ensureNeighbors' | 'deleteNeighbors' | 'ensureFdbs' | 'deleteFdbs' | 'setRoutes' | 'setNeighbors' | 'setFdbs'>;

async function oneByOne<T>(items: readonly T[], fn: (item: T) => Promise<boolean>): Promise<BatchResult[]> {
  const out: BatchResult[] = [];
  for (const it of items) {
    try {
      out.push({ changed: await fn(it) });
    } catch (e) {
      out.push({ changed: false, error: e instanceof Error ? e : new Error(String(e)) });
    }
  }
  return out;
}

export function batchOps(nl: Partial<Netlink>): BatchOps {
  const need = <K extends keyof Netlink>(k: K): NonNullable<Netlink[K]> => {
    const f = nl[k];
    if (typeof f !== 'function') throw new Error(`netlink facade has neither ${String(k)} nor its batch form`);
    return (f as (...a: unknown[]) => unknown).bind(nl) as NonNullable<Netlink[K]>;
  };
  const ensureRoutes = nl.ensureRoutes?.bind(nl) ?? ((specs: readonly RouteSpec[]) => oneByOne(specs, async (s) => (await need('ensureRoute')(s)).changed));
  const ensureNeighbors = nl.ensureNeighbors?.bind(nl) ?? ((specs: readonly NeighborSpec[]) => oneByOne(specs, async (s) => (await need('ensureNeighbor')(s)).changed));
  const ensureFdbs = nl.ensureFdbs?.bind(nl) ?? ((specs: readonly FdbSpec[]) => oneByOne(specs, async (s) => (await need('ensureFdb')(s)).changed));
  return {
    // Without the dump-less forms, the ensure forms (same end state, one read per call).
    setRoutes: nl.setRoutes?.bind(nl) ?? ensureRoutes,
    setNeighbors: nl.setNeighbors?.bind(nl) ?? ensureNeighbors,
    setFdbs: nl.setFdbs?.bind(nl) ?? ensureFdbs,
    ensureRoutes,
    deleteRoutes: nl.deleteRoutes?.bind(nl) ?? ((keys: readonly RouteKey[]) => oneByOne(keys, (k) => need('deleteRoute')(k))),
    ensureNeighbors,
    deleteNeighbors: nl.deleteNeighbors?.bind(nl) ?? ((keys: readonly NeighborKey[]) => oneByOne(keys, (k) => need('deleteNeighbor')(k.index, k.ip))),
    ensureFdbs,
    deleteFdbs: nl.deleteFdbs?.bind(nl) ?? ((specs: readonly FdbSpec[]) => oneByOne(specs, (s) => need('deleteFdb')(s))),
  };
}
