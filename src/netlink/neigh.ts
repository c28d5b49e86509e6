/**
 * Neighbor (ARP) and bridge-FDB entries, both RTM_*NEIGH messages: the
 * family (AF_INET vs AF_BRIDGE) selects the table. The vxlan backend uses a
 * permanent ARP entry (peer overlay address → peer VTEP MAC) and a permanent
 * FDB entry on the VXLAN device (peer VTEP MAC → peer PublicIP).
 */
import type { rt } from 'netlink';
import { formatIp } from '../ip/ipv4';
import { AF_BRIDGE, AF_INET, bufToIp, bufToMac, Conn, CREATE_REPLACE, dev, ipToBuf, macToBuf } from './conn';
import type { EnsureResult, FdbSpec, NeighborSpec } from './types';

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

export async function ensureNeighbor(c: Conn, spec: NeighborSpec): Promise<EnsureResult> {
  const mac = spec.mac.toLowerCase();
  const have = await listNeighbors(c, spec.index);
  if (have.some((n) => n.ip === spec.ip >>> 0 && n.mac === mac && n.permanent)) return { changed: false };
  await c.call('replace', `neighbor ${formatIp(spec.ip)} lladdr ${mac} on ${dev(spec.index)}`, (s) =>
    s.newNeighbor(
      { family: AF_INET, ifindex: spec.index, state: { permanent: true } },
      { dst: ipToBuf(spec.ip), lladdr: macToBuf(mac) },
      { flags: CREATE_REPLACE },
    ),
  );
  return { changed: true };
}

export async function deleteNeighbor(c: Conn, index: number, ip: number): Promise<boolean> {
  return c.callTolerant('delete', `neighbor ${formatIp(ip)} on ${dev(index)}`, ['ENOENT', 'ESRCH'], false, async (s) => {
    await s.delNeighbor({ family: AF_INET, ifindex: index }, { dst: ipToBuf(ip) });
    return true;
  });
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
 * One remote per MAC: the entry is replaced (not appended), and other
 * remotes of the same MAC are removed, so a peer whose PublicIP moved is
 * reached at the new address only.
 */
export async function ensureFdb(c: Conn, spec: FdbSpec): Promise<EnsureResult> {
  const mac = spec.mac.toLowerCase();
  const sameMac = (await listFdb(c, spec.index)).filter((f) => f.mac === mac);
  const ok = sameMac.some((f) => f.dst === spec.dst >>> 0);
  let changed = false;
  if (!ok) {
    await c.call('replace', `fdb ${mac} dst ${formatIp(spec.dst)} on ${dev(spec.index)}`, (s) =>
      s.newNeighbor(
        { family: AF_BRIDGE, ifindex: spec.index, state: { permanent: true }, flags: { self: true } },
        { lladdr: macToBuf(mac), dst: ipToBuf(spec.dst) },
        { flags: CREATE_REPLACE },
      ),
    );
    changed = true;
  }
  for (const f of await listFdb(c, spec.index)) {
    if (f.mac === mac && f.dst !== spec.dst >>> 0 && (await deleteFdb(c, f))) changed = true;
  }
  return { changed };
}

export async function deleteFdb(c: Conn, spec: FdbSpec): Promise<boolean> {
  const mac = spec.mac.toLowerCase();
  return c.callTolerant('delete', `fdb ${mac} dst ${formatIp(spec.dst)} on ${dev(spec.index)}`, ['ENOENT', 'ESRCH'], false, async (s) => {
    await s.delNeighbor(
      { family: AF_BRIDGE, ifindex: spec.index, flags: { self: true } },
      { lladdr: macToBuf(mac), dst: ipToBuf(spec.dst) },
    );
    return true;
  });
}
