/**
 * An in-memory stand-in for the netlink facade, just faithful enough for the
 * vxlan and host-gw backends' unit tests: links, addresses, routes,
 * neighbors and FDB entries as lists; every call recorded in order; any call
 * can be made to fail. The real kernel side is proven by the e2e tests.
 */
import { formatCidr, formatIp } from '../../src/ip/ipv4';
import {
  RTPROT_RUDDER,
  TABLE_MAIN,
  type AddrSpec,
  type FdbSpec,
  type LinkInfo,
  type Netlink,
  type NeighborSpec,
  type RouteInfo,
  type RouteKey,
  type RouteSpec,
  type VxlanSpec,
} from '../../src/netlink';

export type FakeNetlink = Pick<
  Netlink,
  | 'listLinks'
  | 'linkByName'
  | 'deleteLink'
  | 'ensureVxlan'
  | 'ensureAddresses'
  | 'ensureMtu'
  | 'ensureLinkUp'
  | 'listAddresses'
  | 'listRoutes'
  | 'ensureRoute'
  | 'deleteRoute'
  | 'listNeighbors'
  | 'ensureNeighbor'
  | 'deleteNeighbor'
  | 'listFdb'
  | 'ensureFdb'
  | 'deleteFdb'
  | 'close'
>;

export class FakeKernel {
  /** Mutating calls, in order, e.g. "ensureRoute 10.0.2.0/24 via 10.0.2.0 onlink oif 10". */
  calls: string[] = [];
  links: LinkInfo[] = [];
  addrs: Array<AddrSpec & { index: number }> = [];
  routes: RouteInfo[] = [];
  neigh: NeighborSpec[] = [];
  fdb: FdbSpec[] = [];
  vxlanSpecs: VxlanSpec[] = [];
  closed = 0;
  /** A call whose recorded text starts with this fails. */
  failOn: string | undefined;
  /** Called after each recorded call (e.g. to abort mid-start). */
  onCall: ((call: string) => void) | undefined;
  private nextIndex = 10;

  addLink(name: string, kind: string | undefined, mac?: string): LinkInfo {
    const l: LinkInfo = { index: this.nextIndex++, name, mtu: 1500, up: true, kind, mac };
    this.links.push(l);
    return l;
  }

  addRoute(r: Partial<RouteInfo> & { dst: RouteInfo['dst'] }): void {
    this.routes.push({ table: TABLE_MAIN, oif: undefined, gateway: undefined, onlink: false, scope: 0, protocol: RTPROT_RUDDER, type: 1, metric: 0, prefsrc: undefined, ...r });
  }

  link(name: string): LinkInfo | undefined {
    return this.links.find((l) => l.name === name);
  }

  private rec(call: string): void {
    this.calls.push(call);
    if (this.failOn !== undefined && call.startsWith(this.failOn)) throw new Error(`injected failure: ${call}`);
    this.onCall?.(call);
  }

  private setLink(index: number, patch: Partial<LinkInfo>): void {
    this.links = this.links.map((l) => (l.index === index ? { ...l, ...patch } : l));
  }

  private dropLink(index: number): void {
    this.links = this.links.filter((l) => l.index !== index);
    this.routes = this.routes.filter((r) => r.oif !== index);
    this.neigh = this.neigh.filter((n) => n.index !== index);
    this.fdb = this.fdb.filter((f) => f.index !== index);
    this.addrs = this.addrs.filter((a) => a.index !== index);
  }

  nl(): FakeNetlink {
    const k = this;
    const mustLink = (index: number): LinkInfo => {
      const l = k.links.find((x) => x.index === index);
      if (l === undefined) throw new Error(`no link ${index}`);
      return l;
    };
    return {
      listLinks: async () => k.links.map((l) => ({ ...l })),
      linkByName: async (name) => k.links.find((l) => l.name === name) ?? null,
      deleteLink: async (index) => {
        const l = k.links.find((x) => x.index === index);
        k.rec(`deleteLink ${l?.name ?? index}`);
        if (l === undefined) return false;
        k.dropLink(index);
        return true;
      },
      ensureVxlan: async (spec) => {
        k.vxlanSpecs.push(spec);
        const old = k.link(spec.name);
        if (old !== undefined && old.kind === 'vxlan' && old.mac === spec.mac) return { ...old, changed: false };
        k.rec(`ensureVxlan ${spec.name}`);
        if (old !== undefined) k.dropLink(old.index);
        const l = k.addLink(spec.name, 'vxlan', spec.mac);
        k.setLink(l.index, { up: false });
        return { ...(k.link(spec.name) as LinkInfo), changed: true };
      },
      ensureAddresses: async (index, want) => {
        k.rec(`ensureAddresses ${mustLink(index).name} ${want.map((a) => `${formatIp(a.ip)}/${a.prefix}`).join(',')}`);
        k.addrs = [...k.addrs.filter((a) => a.index !== index), ...want.map((a) => ({ ...a, index }))];
        return { changed: true, added: [...want], removed: [] };
      },
      ensureMtu: async (index, mtu) => {
        k.rec(`ensureMtu ${mustLink(index).name} ${mtu}`);
        k.setLink(index, { mtu });
        return { changed: true };
      },
      ensureLinkUp: async (index) => {
        k.rec(`ensureLinkUp ${mustLink(index).name}`);
        k.setLink(index, { up: true });
        return { changed: true };
      },
      listAddresses: async (index) => k.addrs.filter((a) => index === undefined || a.index === index).map((a) => ({ ...a })),
      listRoutes: async (f = {}) =>
        k.routes.filter((r) => (f.table === 'all' || r.table === (f.table ?? TABLE_MAIN)) && (f.protocol === undefined || r.protocol === f.protocol) && (f.oif === undefined || r.oif === f.oif)),
      ensureRoute: async (s: RouteSpec) => {
        k.rec(`ensureRoute ${formatCidr(s.dst)}${s.gateway !== undefined ? ` via ${formatIp(s.gateway)}` : ''}${s.onlink ? ' onlink' : ''} oif ${s.oif}`);
        k.routes = k.routes.filter((r) => !(r.dst.ip === s.dst.ip && r.dst.prefix === s.dst.prefix && r.table === (s.table ?? TABLE_MAIN)));
        k.addRoute({ dst: s.dst, oif: s.oif, gateway: s.gateway, onlink: s.onlink ?? false, protocol: s.protocol ?? RTPROT_RUDDER, table: s.table ?? TABLE_MAIN });
        return { changed: true };
      },
      deleteRoute: async (key: RouteKey) => {
        k.rec(`deleteRoute ${formatCidr(key.dst)}`);
        const match = (r: RouteInfo): boolean =>
          r.dst.ip === key.dst.ip &&
          r.dst.prefix === key.dst.prefix &&
          r.table === (key.table ?? TABLE_MAIN) &&
          (key.oif === undefined || r.oif === key.oif) &&
          (key.gateway === undefined || r.gateway === key.gateway);
        const had = k.routes.some(match);
        k.routes = k.routes.filter((r) => !match(r));
        return had;
      },
      listNeighbors: async (index) => k.neigh.filter((n) => n.index === index).map((n) => ({ ...n })),
      ensureNeighbor: async (s) => {
        k.rec(`ensureNeighbor ${formatIp(s.ip)} ${s.mac}`);
        mustLink(s.index);
        k.neigh = [...k.neigh.filter((n) => !(n.index === s.index && n.ip === s.ip)), { ...s }];
        return { changed: true };
      },
      deleteNeighbor: async (index, ip) => {
        k.rec(`deleteNeighbor ${formatIp(ip)}`);
        const had = k.neigh.some((n) => n.index === index && n.ip === ip);
        k.neigh = k.neigh.filter((n) => !(n.index === index && n.ip === ip));
        return had;
      },
      listFdb: async (index) => k.fdb.filter((f) => f.index === index).map((f) => ({ ...f })),
      ensureFdb: async (s) => {
        k.rec(`ensureFdb ${s.mac} ${formatIp(s.dst)}`);
        mustLink(s.index);
        k.fdb = [...k.fdb.filter((f) => !(f.index === s.index && f.mac === s.mac)), { ...s }];
        return { changed: true };
      },
      deleteFdb: async (s) => {
        k.rec(`deleteFdb ${s.mac} ${formatIp(s.dst)}`);
        const had = k.fdb.some((f) => f.index === s.index && f.mac === s.mac && f.dst === s.dst);
        k.fdb = k.fdb.filter((f) => !(f.index === s.index && f.mac === s.mac && f.dst === s.dst));
        return had;
      },
      close: () => {
        k.closed++;
      },
    };
  }
}

/** A controllable "every": tick() runs the registered function; cancelled counts cancels. */
export class FakeTimer {
  fn: (() => void) | undefined;
  ms: number | undefined;
  cancelled = 0;
  every = (ms: number, fn: () => void): (() => void) => {
    this.ms = ms;
    this.fn = fn;
    return () => {
      this.cancelled++;
      this.fn = undefined;
    };
  };
  /** Runs one reconcile and lets its promise chain settle. */
  async tick(): Promise<void> {
    this.fn?.();
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  }
}
