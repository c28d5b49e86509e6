/**
 * The rtnetlink "ensure" facade: one socket per instance, kernel state only
 * through rtnetlink (never by running `ip`). See types.ts for the contract.
 */
import { Conn } from './conn';
import * as links from './links';
import * as addrs from './addrs';
import * as routes from './routes';
import * as routes6 from './routes6';
import * as neigh from './neigh';
import * as batch from './batch';
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
    listAddresses: async (index) => (await addrs.listAddresses(c, index)).map(({ ip, prefix, index: i }) => ({ ip, prefix, index: i })),
    ensureAddresses: (index, want) => addrs.ensureAddresses(c, index, want),
    listAddresses6: (index) => addrs.listAddresses6(c, index),
    ensureAddresses6: (index, want) => addrs.ensureAddresses6(c, index, want),
    listRoutes: (filter) => routes.listRoutes(c, filter),
    ensureRoutes: (specs, o) => (o?.dump === false ? batch.setRoutes(c, specs) : batch.ensureRoutes(c, specs)),
    ensureUnreachableRoute: (spec) => routes.ensureUnreachableRoute(c, spec),
    deleteRoutes: (keys) => batch.deleteRoutes(c, keys),
    listRoutes6: (filter) => routes6.listRoutes6(c, filter),
    ensureRoutes6: (specs, o) => (o?.dump === false ? batch.setRoutes6(c, specs) : batch.ensureRoutes6(c, specs)),
    ensureUnreachableRoute6: (spec) => routes6.ensureUnreachableRoute6(c, spec),
    deleteRoutes6: (keys) => batch.deleteRoutes6(c, keys),
    listNeighbors: async (index) => (await neigh.listNeighbors(c, index)).map(({ index: i, ip, mac }) => ({ index: i, ip, mac })),
    ensureNeighbors: (specs, o) => (o?.dump === false ? batch.setNeighbors(c, specs) : batch.ensureNeighbors(c, specs)),
    deleteNeighbors: (keys) => batch.deleteNeighbors(c, keys),
    listFdb: (index) => neigh.listFdb(c, index),
    ensureFdbs: (specs, o) => (o?.dump === false ? batch.setFdbs(c, specs) : batch.ensureFdbs(c, specs)),
    deleteFdbs: (specs) => batch.deleteFdbs(c, specs),
    listNeighbors6: async (index) => (await neigh.listNeighbors6(c, index)).map(({ index: i, ip, mac }) => ({ index: i, ip, mac })),
    ensureNeighbors6: (specs, o) => (o?.dump === false ? batch.setNeighbors6(c, specs) : batch.ensureNeighbors6(c, specs)),
    deleteNeighbors6: (keys) => batch.deleteNeighbors6(c, keys),
    listFdb6: (index) => neigh.listFdb6(c, index),
    ensureFdbs6: (specs, o) => (o?.dump === false ? batch.setFdbs6(c, specs) : batch.ensureFdbs6(c, specs)),
    deleteFdbs6: (specs) => batch.deleteFdbs6(c, specs),
    watchKernel: (interested, onChange) => watchKernel(interested, onChange),
    close: () => c.close(),
  };
}
