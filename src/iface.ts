/**
 * Which interface carries host-to-host traffic, and which address other
 * hosts send to. `-iface` names it (by name or by one of its IPv4
 * addresses); otherwise it is the interface of the default route, found over
 * rtnetlink. `-public-ip` overrides the advertised address (NAT).
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { ExternalInterface } from './backend/types';
import { RudderError } from './errors';
import { formatIp, parseIp } from './ip/ipv4';
import { isGlobalIpv6, parseIp6 } from './ip/ipv6';
import { openNetlink } from './netlink';

export async function resolveExternalInterface(iface: string | undefined, publicIp: string | undefined): Promise<ExternalInterface> {
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
      if (!d) {
        throw new RudderError('E_IFACE', 'no IPv4 default route with an addressed interface: pass -iface=NAME|IP to choose the interface for host-to-host traffic');
      }
      ({ name, index, mtu } = d.link);
      address = d.address;
    } else {
      const asIp = parseIp(iface);
      const addrs = await nl.listAddresses();
      if (asIp !== null) {
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
        if (!a) throw new RudderError('E_IFACE', `-iface=${iface}: the interface has no IPv4 address`);
        ({ name, index, mtu } = link);
        address = a.ip;
      }
    }
    return { name, index, mtu, address, publicIP: pub ?? address };
  } finally {
    nl.close();
  }
}

export function describeIface(x: ExternalInterface): string {
  return `${x.name} (${formatIp(x.address)}, mtu ${x.mtu})`;
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
