/**
 * Which interface carries host-to-host traffic, and which address other
 * hosts send to. `-iface` names it (by name or by one of its IPv4 or IPv6
 * addresses); otherwise it is the interface of the default route, found over
 * rtnetlink. `-public-ip` overrides the advertised address (NAT).
 *
 * In an IPv6-only network (EnableIPv4 false) the interface may have no IPv4
 * address (then `address` and `publicIP` are 0), and without -iface the
 * IPv6 default route names it when there is no IPv4 one.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { ExternalInterface } from './backend/types';
import { RudderError } from './errors';
import { formatIp, parseIp } from './ip/ipv4';
import { isGlobalIpv6, parseIp6 } from './ip/ipv6';
import { openNetlink, RTN_UNICAST, TABLE_MAIN, type LinkInfo, type Netlink } from './netlink';

export interface ResolveOptions {
  /** The network carries IPv4 (default true): the interface must have an IPv4 address. */
  readonly ipv4?: boolean;
}

/** The interface of the lowest-metric IPv6 default route of the main table; null if none. */
async function ipv6DefaultLink(nl: Netlink): Promise<LinkInfo | null> {
  const defaults = (await nl.listRoutes6({ table: TABLE_MAIN }))
    .filter((r) => r.dst.prefix === 0 && r.type === RTN_UNICAST && r.oif !== undefined)
    .sort((a, b) => a.metric - b.metric);
  for (const r of defaults) {
    const link = await nl.linkByIndex(r.oif as number);
    if (link !== null) return link;
  }
  return null;
}

export async function resolveExternalInterface(iface: string | undefined, publicIp: string | undefined, opts: ResolveOptions = {}): Promise<ExternalInterface> {
  const needV4 = opts.ipv4 ?? true;
  let pub: number | null = null;
  if (publicIp !== undefined) {
    pub = parseIp(publicIp);
    if (pub === null) throw new RudderError('E_FLAG', `-public-ip=${JSON.stringify(publicIp)}: expected an IPv4 address`);
  }
  const nl = openNetlink();
  try {
    let name: string;
    let index: number;
    let mtu: number;
    let address: number;
    if (iface === undefined || iface === '') {
      const d = await nl.defaultRouteInterface();
      const link6 = d || needV4 ? null : await ipv6DefaultLink(nl);
      if (d) {
        ({ name, index, mtu } = d.link);
        address = d.address;
      } else if (link6) {
        ({ name, index, mtu } = link6);
        address = (await nl.listAddresses(link6.index))[0]?.ip ?? 0;
      } else {
        throw new RudderError(
          'E_IFACE',
          needV4
            ? 'no IPv4 default route with an addressed interface: pass -iface=NAME|IP to choose the interface for host-to-host traffic'
            : 'no IPv4 or IPv6 default route with an addressed interface: pass -iface=NAME|IP to choose the interface for host-to-host traffic',
        );
      }
    } else {
      const asIp = parseIp(iface);
      const asIp6 = asIp === null ? parseIp6(iface) : null;
      const addrs = await nl.listAddresses();
      if (asIp6 !== null) {
        const a6 = (await nl.listAddresses6()).find((x) => x.ip === asIp6);
        if (!a6) throw new RudderError('E_IFACE', `-iface=${iface}: no interface has this address (expected a local IP address or an interface name)`);
        const link = await nl.linkByIndex(a6.index);
        if (!link) throw new RudderError('E_IFACE', `-iface=${iface}: its interface disappeared`);
        const a = addrs.find((x) => x.index === link.index);
        if (!a && needV4) throw new RudderError('E_IFACE', `-iface=${iface}: its interface ${link.name} has no IPv4 address, which this network (EnableIPv4) needs`);
        ({ name, index, mtu } = link);
        address = a?.ip ?? 0;
      } else if (asIp !== null) {
        const a = addrs.find((x) => x.ip === asIp);
        if (!a) throw new RudderError('E_IFACE', `-iface=${iface}: no interface has this address (expected a local IPv4 address or an interface name)`);
        const link = await nl.linkByIndex(a.index);
        if (!link) throw new RudderError('E_IFACE', `-iface=${iface}: its interface disappeared`);
        ({ name, index, mtu } = link);
        address = asIp;
      } else {
        const link = await nl.linkByName(iface);
        if (!link) throw new RudderError('E_IFACE', `-iface=${JSON.stringify(iface)}: no such interface (expected an interface name or a local IPv4 address)`);
        const mine = addrs.filter((x) => x.index === link.index);
        // The kernel lists an interface's primary address first.
        const a = mine[0];
        if (!a && needV4) throw new RudderError('E_IFACE', `-iface=${iface}: the interface has no IPv4 address`);
        ({ name, index, mtu } = link);
        address = a?.ip ?? 0;
      }
    }
    return { name, index, mtu, address, publicIP: pub ?? address };
  } finally {
    nl.close();
  }
}

export function describeIface(x: ExternalInterface): string {
  return `${x.name} (${x.address !== 0 ? formatIp(x.address) : 'no IPv4 address'}, mtu ${x.mtu})`;
}

/**
 * The first global IPv6 address of interface `name` (pure over the
 * os.networkInterfaces() listing, which the kernel orders as `ip -6 addr`
 * does), or null.
 */
export function globalIpv6Of(name: string, listing: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): bigint | null {
  for (const a of listing[name] ?? []) {
    if (a.family !== 'IPv6') continue;
    const ip = parseIp6(a.address);
    if (ip !== null && isGlobalIpv6(ip)) return ip;
  }
  return null;
}

/**
 * This host's PublicIPv6 (EnableIPv6): `-public-ipv6` when given, else the
 * global IPv6 address of the underlay interface; an E_IFACE naming the
 * interface when it has none.
 */
export function resolvePublicIpv6(ifaceName: string, flag: string | undefined, listing?: NodeJS.Dict<NetworkInterfaceInfo[]>): bigint {
  if (flag !== undefined && flag !== '') {
    const ip = parseIp6(flag);
    if (ip === null || !isGlobalIpv6(ip)) throw new RudderError('E_FLAG', `-public-ipv6=${JSON.stringify(flag)}: expected a global unicast IPv6 address such as "2001:2::1"`);
    return ip;
  }
  const ip = globalIpv6Of(ifaceName, listing);
  if (ip === null) {
    throw new RudderError(
      'E_IFACE',
      `EnableIPv6 is on but interface ${ifaceName} has no global IPv6 address: add one to ${ifaceName}, choose another interface with -iface, or give the address other hosts send to with -public-ipv6`,
    );
  }
  return ip;
}
