/**
 * Interface addresses of either family (INET, INET6 of family.ts): IPv4, and
 * IPv6 of global scope (link-local and loopback addresses are the kernel's).
 */
import { Conn, CREATE_REPLACE, dev } from './conn';
import type { NetFamily } from './family';
import type { AddressesResultOf, AddrSpecOf } from './types';

export type IndexedAddr<A extends number | bigint = number> = AddrSpecOf<A> & { readonly index: number; readonly secondary: boolean };

/** ifa_scope of a global address (RT_SCOPE_UNIVERSE). */
const SCOPE_UNIVERSE = 0;

export async function listAddresses<A extends number | bigint>(c: Conn, fam: NetFamily<A>, index?: number): Promise<Array<IndexedAddr<A>>> {
  const what = `${fam.label}addresses`;
  const msgs = await c.call('list', index === undefined ? what : `${what} of ${dev(index)}`, (s) => s.getAddresses({ family: fam.af }));
  const out: Array<IndexedAddr<A>> = [];
  for (const m of msgs) {
    if (m.data.family !== fam.af) continue;
    if (fam.v6 && (m.data.scope ?? 0) !== SCOPE_UNIVERSE) continue;
    if (index !== undefined && m.data.index !== index) continue;
    // IFA_LOCAL is the host's own address; IFA_ADDRESS is the peer on point-to-point links.
    const ip = fam.fromBuf(m.attrs.local) ?? fam.fromBuf(m.attrs.address);
    if (ip === undefined) continue;
    out.push({ ip, prefix: m.data.prefixlen ?? (fam.v6 ? 128 : 32), index: m.data.index ?? 0, secondary: m.data.flags?.secondary === true });
  }
  return out;
}

export async function ensureAddresses<A extends number | bigint>(c: Conn, fam: NetFamily<A>, index: number, want: ReadonlyArray<AddrSpecOf<A>>): Promise<AddressesResultOf<A>> {
  const same = (a: AddrSpecOf<A>, b: AddrSpecOf<A>): boolean => fam.key(a.ip) === fam.key(b.ip) && a.prefix === b.prefix;
  const fmt = (a: AddrSpecOf<A>): string => `${fam.formatIp(a.ip)}/${a.prefix}`;
  const have = await listAddresses(c, fam, index);
  const removed: Array<AddrSpecOf<A>> = [];
  const added: Array<AddrSpecOf<A>> = [];
  // Remove first: a stale address with the same IP but another prefix would
  // otherwise make the kernel keep both.
  for (const h of have) {
    if (want.some((w) => same(w, h))) continue;
    const a = { ip: h.ip, prefix: h.prefix };
    // ESRCH/EADDRNOTAVAIL: deleting a primary also drops its secondaries; already gone is fine.
    const gone = await c.callTolerant('delete', `address ${fmt(a)} from ${dev(index)}`, ['EADDRNOTAVAIL', 'ESRCH'], false, async (s) => {
      await s.delAddress({ family: fam.af, prefixlen: a.prefix, index }, { local: fam.toBuf(a.ip) });
      return true;
    });
    if (gone) removed.push(a);
  }
  for (const w of want) {
    if (have.some((h) => same(w, h))) continue;
    const a = { ip: fam.key(w.ip), prefix: w.prefix };
    await c.call('add', `address ${fmt(a)} to ${dev(index)}`, (s) =>
      s.newAddress(
        // IPv6: no duplicate address detection, so the address is usable at once (see Netlink.ensureAddresses6).
        { family: fam.af, prefixlen: a.prefix, index, ...(fam.v6 ? { flags: { nodad: true } } : {}) },
        { local: fam.toBuf(a.ip), address: fam.toBuf(a.ip) },
        { flags: CREATE_REPLACE },
      ),
    );
    added.push(a);
  }
  return { changed: added.length + removed.length > 0, added, removed };
}
