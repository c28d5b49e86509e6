/**
 * Neighbor (ARP, NDP) and bridge-FDB entries, all RTM_*NEIGH messages: the
 * family (AF_INET, AF_INET6 vs AF_BRIDGE) selects the table. The vxlan
 * backend uses a permanent neighbor entry (peer overlay address → peer VTEP
 * MAC) and a permanent FDB entry on the VXLAN device (peer VTEP MAC → peer
 * PublicIP); on its IPv6 device both with IPv6 addresses (NDA_DST of 16
 * bytes: an FDB entry's remote is then the peer's PublicIPv6).
 */
import type * as rt from './rtmsg';
import { formatIp } from '../ip/ipv4';
import { formatIp6 } from '../ip/ipv6';
import { AF_BRIDGE, AF_INET, bufToIp, bufToMac, Conn, CREATE_REPLACE, dev, macToBuf } from './conn';
import type { Fdb6Spec, FdbSpec, Neighbor6Key, Neighbor6Spec, NeighborKey, NeighborSpec } from './types';
import { AF_INET6, bufToIp6, neighMessage, NTF_SELF, NUD_PERMANENT, RTM_DELNEIGH, RTM_NEWNEIGH } from './wire';

type NeighMsg = rt.NeighborMessage;

async function dump(c: Conn, family: number, index: number, what: string): Promise<NeighMsg[]> {
  const msgs = await c.call('list', `${what} of ${dev(index)}`, (s) => s.getNeighbors({ family }));
  return msgs.filter((m) => m.data.family === family && m.data.ifindex === index);
}

export async function listNeighbors(c: Conn, index: number): Promise<Array<NeighborSpec & { permanent: boolean }>> {
  const out: Array<NeighborSpec & { permanent: boolean }> = [];
  for (const m of await dump(c, AF_INET, index, 'neighbors')) {
    const ip = bufToIp(m.attrs.dst);
    const mac = bufToMac(m.attrs.lladdr);
    if (ip === undefined || mac === undefined) continue;
    out.push({ index, ip, mac, permanent: m.data.state?.permanent === true });
  }
  return out;
}

/** A permanent neighbor, CREATE|REPLACE; `mac` lower-case. */
export async function replaceNeighbor(c: Conn, spec: NeighborSpec, mac: string): Promise<void> {
  macToBuf(mac); // validates, with the facade's error
  return c.send('replace', () => `neighbor ${formatIp(spec.ip)} lladdr ${mac} on ${dev(spec.index)}`, (seq) =>
    neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, seq, { family: AF_INET, ifindex: spec.index, state: NUD_PERMANENT, flags: 0, dst: spec.ip, lladdr: mac }),
  );
}

/** Deletes a neighbor; false when there was none. */
export function removeNeighbor(c: Conn, k: NeighborKey): Promise<boolean> {
  return c.sendTolerant('delete', () => `neighbor ${formatIp(k.ip)} on ${dev(k.index)}`, ['ENOENT', 'ESRCH'], (seq) =>
    neighMessage(RTM_DELNEIGH, 0, seq, { family: AF_INET, ifindex: k.index, state: 0, flags: 0, dst: k.ip }),
  );
}

export async function listFdb(c: Conn, index: number): Promise<FdbSpec[]> {
  const out: FdbSpec[] = [];
  for (const m of await dump(c, AF_BRIDGE, index, 'fdb')) {
    const mac = bufToMac(m.attrs.lladdr);
    const dst = bufToIp(m.attrs.dst);
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
export async function ensureFdbAgainst(c: Conn, spec: FdbSpec, mac: string, sameMac: readonly FdbSpec[]): Promise<boolean> {
  let changed = false;
  if (!sameMac.some((f) => f.dst === spec.dst >>> 0)) {
    await replaceFdb(c, spec, mac);
    changed = true;
  }
  for (const f of sameMac) if (f.dst !== spec.dst >>> 0 && (await deleteFdb(c, f))) changed = true;
  return changed;
}

/**
 * A permanent FDB entry on the device itself (NTF_SELF), CREATE|REPLACE: for
 * a unicast MAC the VXLAN driver replaces the entry's first remote. `mac`
 * lower-case.
 */
export async function replaceFdb(c: Conn, spec: FdbSpec, mac: string): Promise<void> {
  macToBuf(mac);
  return c.send('replace', () => `fdb ${mac} dst ${formatIp(spec.dst)} on ${dev(spec.index)}`, (seq) =>
    neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, seq, { family: AF_BRIDGE, ifindex: spec.index, state: NUD_PERMANENT, flags: NTF_SELF, dst: spec.dst, lladdr: mac }),
  );
}

/** Deletes one remote of an FDB entry; false when there was none. */
export async function deleteFdb(c: Conn, spec: FdbSpec): Promise<boolean> {
  const mac = spec.mac.toLowerCase();
  macToBuf(mac);
  return c.sendTolerant('delete', () => `fdb ${mac} dst ${formatIp(spec.dst)} on ${dev(spec.index)}`, ['ENOENT', 'ESRCH'], (seq) =>
    neighMessage(RTM_DELNEIGH, 0, seq, { family: AF_BRIDGE, ifindex: spec.index, state: 0, flags: NTF_SELF, dst: spec.dst, lladdr: mac }),
  );
}

// ---------------------------------------------------------------------------
// IPv6: NDP entries, and FDB entries with an IPv6 remote

export async function listNeighbors6(c: Conn, index: number): Promise<Array<Neighbor6Spec & { permanent: boolean }>> {
  const out: Array<Neighbor6Spec & { permanent: boolean }> = [];
  for (const m of await dump(c, AF_INET6, index, 'IPv6 neighbors')) {
    const ip = bufToIp6(m.attrs.dst);
    const mac = bufToMac(m.attrs.lladdr);
    if (ip === undefined || mac === undefined) continue;
    out.push({ index, ip, mac, permanent: m.data.state?.permanent === true });
  }
  return out;
}

/** A permanent IPv6 neighbor, CREATE|REPLACE; `mac` lower-case. */
export async function replaceNeighbor6(c: Conn, spec: Neighbor6Spec, mac: string): Promise<void> {
  macToBuf(mac);
  return c.send('replace', () => `neighbor ${formatIp6(spec.ip)} lladdr ${mac} on ${dev(spec.index)}`, (seq) =>
    neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, seq, { family: AF_INET6, ifindex: spec.index, state: NUD_PERMANENT, flags: 0, dst: spec.ip, lladdr: mac }),
  );
}

/** Deletes an IPv6 neighbor; false when there was none. */
export function removeNeighbor6(c: Conn, k: Neighbor6Key): Promise<boolean> {
  return c.sendTolerant('delete', () => `neighbor ${formatIp6(k.ip)} on ${dev(k.index)}`, ['ENOENT', 'ESRCH'], (seq) =>
    neighMessage(RTM_DELNEIGH, 0, seq, { family: AF_INET6, ifindex: k.index, state: 0, flags: 0, dst: k.ip }),
  );
}

/** FDB entries of an IPv6 VXLAN device whose remote is an IPv6 address. */
export async function listFdb6(c: Conn, index: number): Promise<Fdb6Spec[]> {
  const out: Fdb6Spec[] = [];
  for (const m of await dump(c, AF_BRIDGE, index, 'fdb')) {
    const mac = bufToMac(m.attrs.lladdr);
    const dst = bufToIp6(m.attrs.dst);
    if (mac === undefined || dst === undefined) continue;
    out.push({ index, mac, dst });
  }
  return out;
}

/** As ensureFdbAgainst, with an IPv6 remote. */
export async function ensureFdb6Against(c: Conn, spec: Fdb6Spec, mac: string, sameMac: readonly Fdb6Spec[]): Promise<boolean> {
  let changed = false;
  if (!sameMac.some((f) => f.dst === spec.dst)) {
    await replaceFdb6(c, spec, mac);
    changed = true;
  }
  for (const f of sameMac) if (f.dst !== spec.dst && (await deleteFdb6(c, f))) changed = true;
  return changed;
}

/** As replaceFdb, with an IPv6 remote. */
export async function replaceFdb6(c: Conn, spec: Fdb6Spec, mac: string): Promise<void> {
  macToBuf(mac);
  return c.send('replace', () => `fdb ${mac} dst ${formatIp6(spec.dst)} on ${dev(spec.index)}`, (seq) =>
    neighMessage(RTM_NEWNEIGH, CREATE_REPLACE, seq, { family: AF_BRIDGE, ifindex: spec.index, state: NUD_PERMANENT, flags: NTF_SELF, dst: spec.dst, lladdr: mac }),
  );
}

/** Deletes one IPv6 remote of an FDB entry; false when there was none. */
export async function deleteFdb6(c: Conn, spec: Fdb6Spec): Promise<boolean> {
  const mac = spec.mac.toLowerCase();
  macToBuf(mac);
  return c.sendTolerant('delete', () => `fdb ${mac} dst ${formatIp6(spec.dst)} on ${dev(spec.index)}`, ['ENOENT', 'ESRCH'], (seq) =>
    neighMessage(RTM_DELNEIGH, 0, seq, { family: AF_BRIDGE, ifindex: spec.index, state: 0, flags: NTF_SELF, dst: spec.dst, lladdr: mac }),
  );
}
