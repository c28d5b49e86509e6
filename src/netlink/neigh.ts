/**
 * Neighbor (ARP, NDP) and bridge-FDB entries, all RTM_*NEIGH messages: the
 * family (AF_INET, AF_INET6 vs AF_BRIDGE) selects the table. The vxlan
 * backend uses a permanent neighbor entry (peer overlay address → peer VTEP
 * MAC) and a permanent FDB entry on the VXLAN device (peer VTEP MAC → peer
 * PublicIP); on its IPv6 device both with IPv6 addresses (NDA_DST of 16
 * bytes: an FDB entry's remote is then the peer's PublicIPv6). Written once
 * over the address family (INET, INET6 of family.ts).
 */
import type * as rt from './rtmsg';
import { AF_BRIDGE, bufToMac, Conn, CREATE_REPLACE, dev, macToBuf } from './conn';
import type { NetFamily } from './family';
import type { FdbSpecOf, NeighborKeyOf, NeighborSpecOf } from './types';
import { neighMessage, NTF_SELF, NUD_PERMANENT, RTM_DELNEIGH, RTM_NEWNEIGH } from './wire';

type NeighMsg = rt.NeighborMessage;

async function dump(c: Conn, family: number, index: number, what: string): Promise<NeighMsg[]> {
  const msgs = await c.call('list', `${what} of ${dev(index)}`, (s) => s.getNeighbors({ family }));
  return msgs.filter((m) => m.data.family === family && m.data.ifindex === index);
}

export async function listNeighbors<A extends number | bigint>(c: Conn, fam: NetFamily<A>, index: number): Promise<Array<NeighborSpecOf<A> & { permanent: boolean }>> {
  const out: Array<NeighborSpecOf<A> & { permanent: boolean }> = [];
  for (const m of await dump(c, fam.af, index, `${fam.label}neighbors`)) {
    const ip = fam.fromBuf(m.attrs.dst);
    const mac = bufToMac(m.attrs.lladdr);
    if (ip === undefined || mac === undefined) continue;
    out.push({ index, ip, mac, permanent: m.data.state?.permanent === true });
  }
  return out;
}

/** A permanent neighbor, CREATE|REPLACE; `mac` lower-case. */
export async function replaceNeighbor<A extends number | bigint>(c: Conn, fam: NetFamily<A>, spec: NeighborSpecOf<A>, mac: string): Promise<void> {
  macToBuf(mac); // validates, with the facade's error
  return c.send('replace', () => `neighbor ${fam.formatIp(spec.ip)} lladdr ${mac} on ${dev(spec.index)}`, (seq) =>
    neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, seq, { family: fam.af, ifindex: spec.index, state: NUD_PERMANENT, flags: 0, dst: spec.ip, lladdr: mac }),
  );
}

/** Deletes a neighbor; false when there was none. */
export function removeNeighbor<A extends number | bigint>(c: Conn, fam: NetFamily<A>, k: NeighborKeyOf<A>): Promise<boolean> {
  return c.sendTolerant('delete', () => `neighbor ${fam.formatIp(k.ip)} on ${dev(k.index)}`, ['ENOENT', 'ESRCH'], (seq) =>
    neighMessage(RTM_DELNEIGH, 0, seq, { family: fam.af, ifindex: k.index, state: 0, flags: 0, dst: k.ip }),
  );
}

/** The FDB entries of a VXLAN device whose remote is of this family (an IPv4 device's, or an IPv6 device's). */
export async function listFdb<A extends number | bigint>(c: Conn, fam: NetFamily<A>, index: number): Promise<Array<FdbSpecOf<A>>> {
  const out: Array<FdbSpecOf<A>> = [];
  for (const m of await dump(c, AF_BRIDGE, index, 'fdb')) {
    const mac = bufToMac(m.attrs.lladdr);
    const dst = fam.fromBuf(m.attrs.dst);
    // Entries without a remote (the device's own address) are not Rudder's.
    if (mac === undefined || dst === undefined) continue;
    out.push({ index, mac, dst });
  }
  return out;
}

/**
 * Makes `spec` the one remote of its MAC, given the entries of that MAC now
 * (`sameMac`): written unless present, the other remotes deleted (one that the
 * replace already overwrote is simply not found). Returns whether anything changed.
 */
export async function ensureFdbAgainst<A extends number | bigint>(c: Conn, fam: NetFamily<A>, spec: FdbSpecOf<A>, mac: string, sameMac: ReadonlyArray<FdbSpecOf<A>>): Promise<boolean> {
  let changed = false;
  if (!sameMac.some((f) => f.dst === fam.key(spec.dst))) {
    await replaceFdb(c, fam, spec, mac);
    changed = true;
  }
  for (const f of sameMac) if (f.dst !== fam.key(spec.dst) && (await deleteFdb(c, fam, f))) changed = true;
  return changed;
}

/**
 * A permanent FDB entry on the device itself (NTF_SELF), CREATE|REPLACE: for
 * a unicast MAC the VXLAN driver replaces the entry's first remote. `mac`
 * lower-case.
 */
export async function replaceFdb<A extends number | bigint>(c: Conn, fam: NetFamily<A>, spec: FdbSpecOf<A>, mac: string): Promise<void> {
  macToBuf(mac);
  return c.send('replace', () => `fdb ${mac} dst ${fam.formatIp(spec.dst)} on ${dev(spec.index)}`, (seq) =>
    neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, seq, { family: AF_BRIDGE, ifindex: spec.index, state: NUD_PERMANENT, flags: NTF_SELF, dst: spec.dst, lladdr: mac }),
  );
}

/** Deletes one remote of an FDB entry; false when there was none. */
export async function deleteFdb<A extends number | bigint>(c: Conn, fam: NetFamily<A>, spec: FdbSpecOf<A>): Promise<boolean> {
  const mac = spec.mac.toLowerCase();
  macToBuf(mac);
  return c.sendTolerant('delete', () => `fdb ${mac} dst ${fam.formatIp(spec.dst)} on ${dev(spec.index)}`, ['ENOENT', 'ESRCH'], (seq) =>
    neighMessage(RTM_DELNEIGH, 0, seq, { family: AF_BRIDGE, ifindex: spec.index, state: 0, flags: NTF_SELF, dst: spec.dst, lladdr: mac }),
  );
}
