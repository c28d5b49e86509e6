/** Interface addresses: IPv4, and IPv6 of global scope. */
import { formatIp } from '../ip/ipv4';
import { formatIp6 } from '../ip/ipv6';
import { AF_INET, bufToIp, Conn, CREATE_REPLACE, dev, ipToBuf } from './conn';
import { AF_INET6, bufToIp6, ip6ToBuf } from './wire';
import type { Addr6Spec, Addresses6Result, AddressesResult, AddrSpec } from './types';

export type IndexedAddr = AddrSpec & { readonly index: number; readonly secondary: boolean };

export async function listAddresses(c: Conn, index?: number): Promise<IndexedAddr[]> {
  const msgs = await c.call('list', index === undefined ? 'addresses' : `addresses of ${dev(index)}`, (s) =>
    s.getAddresses({ family: AF_INET }),
  );
  const out: IndexedAddr[] = [];
  for (const m of msgs) {
    if (m.data.family !== AF_INET) continue;
    if (index !== undefined && m.data.index !== index) continue;
    // IFA_LOCAL is the host's own address; IFA_ADDRESS is the peer on point-to-point links.
    const ip = bufToIp(m.attrs.local) ?? bufToIp(m.attrs.address);
    if (ip === undefined) continue;
    out.push({ ip, prefix: m.data.prefixlen ?? 32, index: m.data.index ?? 0, secondary: m.data.flags?.secondary === true });
  }
  return out;
}

const same = (a: AddrSpec, b: AddrSpec): boolean => a.ip >>> 0 === b.ip >>> 0 && a.prefix === b.prefix;
const fmt = (a: AddrSpec): string => `${formatIp(a.ip)}/${a.prefix}`;

export async function ensureAddresses(c: Conn, index: number, want: readonly AddrSpec[]): Promise<AddressesResult> {
  const have = await listAddresses(c, index);
  const removed: AddrSpec[] = [];
  const added: AddrSpec[] = [];
  // Remove first: a stale address with the same IP but another prefix would
  // otherwise make the kernel keep both.
  for (const h of have) {
    if (want.some((w) => same(w, h))) continue;
    const a = { ip: h.ip, prefix: h.prefix };
    // ESRCH/EADDRNOTAVAIL: deleting a primary also drops its secondaries; already gone is fine.
    const gone = await c.callTolerant('delete', `address ${fmt(a)} from ${dev(index)}`, ['EADDRNOTAVAIL', 'ESRCH'], false, async (s) => {
      await s.delAddress({ family: AF_INET, prefixlen: a.prefix, index }, { local: ipToBuf(a.ip) });
      return true;
    });
    if (gone) removed.push(a);
  }
  for (const w of want) {
    if (have.some((h) => same(w, h))) continue;
    const a = { ip: w.ip >>> 0, prefix: w.prefix };
    await c.call('add', `address ${fmt(a)} to ${dev(index)}`, (s) =>
      s.newAddress(
        { family: AF_INET, prefixlen: a.prefix, index },
        { local: ipToBuf(a.ip), address: ipToBuf(a.ip) },
        { flags: CREATE_REPLACE },
      ),
    );
    added.push(a);
  }
  return { changed: added.length + removed.length > 0, added, removed };
}

// ---------------------------------------------------------------------------
// IPv6: global scope only (link-local and loopback addresses are the kernel's).

/** ifa_scope of a global address (RT_SCOPE_UNIVERSE). */
const SCOPE_UNIVERSE = 0;

export type IndexedAddr6 = Addr6Spec & { readonly index: number };

export async function listAddresses6(c: Conn, index?: number): Promise<IndexedAddr6[]> {
  const msgs = await c.call('list', index === undefined ? 'IPv6 addresses' : `IPv6 addresses of ${dev(index)}`, (s) => s.getAddresses({ family: AF_INET6 }));
  const out: IndexedAddr6[] = [];
  for (const m of msgs) {
    if (m.data.family !== AF_INET6 || (m.data.scope ?? 0) !== SCOPE_UNIVERSE) continue;
    if (index !== undefined && m.data.index !== index) continue;
    const ip = bufToIp6(m.attrs.local) ?? bufToIp6(m.attrs.address);
    if (ip === undefined) continue;
    out.push({ ip, prefix: m.data.prefixlen ?? 128, index: m.data.index ?? 0 });
  }
  return out;
}

const same6 = (a: Addr6Spec, b: Addr6Spec): boolean => a.ip === b.ip && a.prefix === b.prefix;
const fmt6 = (a: Addr6Spec): string => `${formatIp6(a.ip)}/${a.prefix}`;

export async function ensureAddresses6(c: Conn, index: number, want: readonly Addr6Spec[]): Promise<Addresses6Result> {
  const have = await listAddresses6(c, index);
  const removed: Addr6Spec[] = [];
  const added: Addr6Spec[] = [];
  for (const h of have) {
    if (want.some((w) => same6(w, h))) continue;
    const a = { ip: h.ip, prefix: h.prefix };
    const gone = await c.callTolerant('delete', `address ${fmt6(a)} from ${dev(index)}`, ['EADDRNOTAVAIL', 'ESRCH'], false, async (s) => {
      await s.delAddress({ family: AF_INET6, prefixlen: a.prefix, index }, { local: ip6ToBuf(a.ip) });
      return true;
    });
    if (gone) removed.push(a);
  }
  for (const w of want) {
    if (have.some((h) => same6(w, h))) continue;
    const a = { ip: w.ip, prefix: w.prefix };
    await c.call('add', `address ${fmt6(a)} to ${dev(index)}`, (s) =>
      s.newAddress(
        // No duplicate address detection: the address is usable at once (see Netlink.ensureAddresses6).
        { family: AF_INET6, prefixlen: a.prefix, index, flags: { nodad: true } },
        { local: ip6ToBuf(a.ip), address: ip6ToBuf(a.ip) },
        { flags: CREATE_REPLACE },
      ),
    );
    added.push(a);
  }
  return { changed: added.length + removed.length > 0, added, removed };
}
