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
import { INET, INET6 } from './family';
import { ROUTE4, ROUTE6 } from './routes';
import { watchKernel } from './monitor';
import type { Netlink } from './types';

export * from './types';
export { KernelError, errnoOf } from './conn';

export function openNetlink(): Netlink {
  const c = new Conn();
  return {
    listLinks: () => links.listLinks(c),
    linkByName: (name) => links.linkByName(c, name),
    linkByIndex: (index) => links.linkByIndex(c, index),
    defaultRouteInterface: () => routes.defaultRouteInterface(c),
    deleteLink: (index) => links.deleteLink(c, index),
    ensureLinkUp: (index) => links.ensureLinkUp(c, index),
    ensureMtu: (index, mtu) => links.ensureMtu(c, index, mtu),
    ensureVxlan: (spec) => links.ensureVxlan(c, spec),
    listAddresses: async (index) => (await addrs.listAddresses(c, INET, index)).map(({ ip, prefix, index: i }) => ({ ip, prefix, index: i })),
    ensureAddresses: (index, want) => addrs.ensureAddresses(c, INET, index, want),
    listAddresses6: async (index) => (await addrs.listAddresses(c, INET6, index)).map(({ ip, prefix, index: i }) => ({ ip, prefix, index: i })),
    ensureAddresses6: (index, want) => addrs.ensureAddresses(c, INET6, index, want),
    listRoutes: (filter) => routes.listRoutes(c, ROUTE4, filter),
    ensureRoutes: (specs, o) => batch.ensureRoutes(c, ROUTE4, specs, o),
    ensureUnreachableRoute: (spec) => routes.ensureUnreachableRoute(c, ROUTE4, spec),
    deleteRoutes: (keys) => batch.deleteRoutes(c, ROUTE4, keys),
    listRoutes6: (filter) => routes.listRoutes(c, ROUTE6, filter),
    ensureRoutes6: (specs, o) => batch.ensureRoutes(c, ROUTE6, specs, o),
    ensureUnreachableRoute6: (spec) => routes.ensureUnreachableRoute(c, ROUTE6, spec),
    deleteRoutes6: (keys) => batch.deleteRoutes(c, ROUTE6, keys),
    listNeighbors: async (index) => (await neigh.listNeighbors(c, INET, index)).map(({ index: i, ip, mac }) => ({ index: i, ip, mac })),
    ensureNeighbors: (specs, o) => batch.ensureNeighbors(c, INET, specs, o),
    deleteNeighbors: (keys) => batch.deleteNeighbors(c, INET, keys),
    listFdb: (index) => neigh.listFdb(c, INET, index),
    ensureFdbs: (specs, o) => batch.ensureFdbs(c, INET, specs, o),
    deleteFdbs: (specs) => batch.deleteFdbs(c, INET, specs),
    listNeighbors6: async (index) => (await neigh.listNeighbors(c, INET6, index)).map(({ index: i, ip, mac }) => ({ index: i, ip, mac })),
    ensureNeighbors6: (specs, o) => batch.ensureNeighbors(c, INET6, specs, o),
    deleteNeighbors6: (keys) => batch.deleteNeighbors(c, INET6, keys),
    listFdb6: (index) => neigh.listFdb(c, INET6, index),
    ensureFdbs6: (specs, o) => batch.ensureFdbs(c, INET6, specs, o),
    deleteFdbs6: (specs) => batch.deleteFdbs(c, INET6, specs),
    watchKernel: (interested, onChange) => watchKernel(interested, onChange),
    close: () => c.close(),
  };
}
