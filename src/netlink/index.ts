/**
 * The rtnetlink "ensure" facade: one socket per instance, kernel state only
 * through rtnetlink (never by running `ip`). See types.ts for the contract.
 */
import { Conn } from './conn';
import * as links from './links';
import * as addrs from './addrs';
import * as routes from './routes';
import * as neigh from './neigh';
import * as batch from './batch';
import { watchKernel } from './monitor';
import type { Netlink } from './types';

export * from './types';
export { KernelError, errnoOf } from './conn';
export { batchOps, type BatchOps } from './fallback';

export function openNetlink(): Netlink {
  const c = new Conn();
  return {
    listLinks: () => links.listLinks(c),
    linkByName: (name) => links.linkByName(c, name),
    linkByIndex: (index) => links.linkByIndex(c, index),
    linkByAddress: async (ip) => {
      const a = (await addrs.listAddresses(c)).find((x) => x.ip === ip >>> 0);
      return a === undefined ? null : links.linkByIndex(c, a.index);
    },
    defaultRouteInterface: () => routes.defaultRouteInterface(c),
    deleteLink: (index) => links.deleteLink(c, index),
    ensureLinkUp: (index) => links.ensureLinkUp(c, index),
    ensureMtu: (index, mtu) => links.ensureMtu(c, index, mtu),
    listAddresses: async (index) => (await addrs.listAddresses(c, index)).map(({ ip, prefix, index: i }) => ({ ip, prefix, index: i })),
    ensureAddresses: (index, want) => addrs.ensureAddresses(c, index, want),
    listRoutes: (filter) => routes.listRoutes(c, filter),
    ensureRoute: (spec) => routes.ensureRoute(c, spec),
    ensureUnreachableRoute: (spec) => routes.ensureUnreachableRoute(c, spec),
    deleteRoute: (key) => routes.deleteRoute(c, key),
    listNeighbors: async (index) => (await neigh.listNeighbors(c, index)).map(({ index: i, ip, mac }) => ({ index: i, ip, mac })),
    ensureNeighbor: (spec) => neigh.ensureNeighbor(c, spec),
    deleteNeighbor: (index, ip) => neigh.deleteNeighbor(c, index, ip),
    listFdb: (index) => neigh.listFdb(c, index),
    ensureFdb: (spec) => neigh.ensureFdb(c, spec),
    deleteFdb: (spec) => neigh.deleteFdb(c, spec),
    ensureRoutes: (specs) => batch.ensureRoutes(c, specs),
    deleteRoutes: (keys) => batch.deleteRoutes(c, keys),
    ensureNeighbors: (specs) => batch.ensureNeighbors(c, specs),
    deleteNeighbors: (keys) => batch.deleteNeighbors(c, keys),
    ensureFdbs: (specs) => batch.ensureFdbs(c, specs),
    deleteFdbs: (specs) => batch.deleteFdbs(c, specs),
    setRoutes: (specs) => batch.setRoutes(c, specs),
    setNeighbors: (specs) => batch.setNeighbors(c, specs),
    setFdbs: (specs) => batch.setFdbs(c, specs),
    watchKernel: (interested, onChange) => watchKernel(interested, onChange),
    ensureVxlan: (spec) => links.ensureVxlan(c, spec),
    close: () => c.close(),
  };
}

