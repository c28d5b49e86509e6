/** IPv4 interface addresses. */
import { formatIp } from '../ip/ipv4';
import { AF_INET, bufToIp, Conn, CREATE_REPLACE, dev, ipToBuf } from './conn';
import type { AddressesResult, AddrSpec } from './types';

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
