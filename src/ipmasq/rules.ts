/**
 * The -ip-masq rules as nftables text (pure; unit-tested).
 *
 * Everything lives in tables of Rudder's own, `table ip rudder` for IPv4 and
 * `table ip6 rudder` for IPv6 (only when the network has that family), so
 * they are applied, checked and removed as a unit and never touch another
 * program's rules. The script replaces the tables atomically: `nft -f` runs
 * the whole file as one transaction, and "add empty table; delete it; define
 * it" works whether or not a (possibly stale) table was there.
 *
 * postrouting (nat, priority srcnat = 100), flannel's rules, per family:
 *   1. Network → Network                 return  (pod to pod keeps pod addresses)
 *   2. Network → not multicast           masquerade (leaving the overlay; multicast,
 *      224.0.0.0/4 or ff00::/8, is left alone)
 *   3. not Network → own subnet          return  (into local pods: keep the source)
 *   4. not Network → Network             masquerade (the host or a forwarded
 *      source into remote pods: their host routes replies back over the overlay)
 *
 * forward (filter, priority filter = 0, policy accept): accepts the
 * Network's traffic both ways. nftables evaluates every base chain at a hook
 * and an accept only ends the current one: a drop elsewhere (iptables'
 * FORWARD policy DROP set by Docker, through iptables-nft's `table ip filter`
 * or iptables-legacy) still drops. Rudder does not edit other programs'
 * tables; it warns when it sees such a chain (see forwardDropChains) and the
 * README says which two rules to add there.
 */
import { Cidr, formatCidr } from '../ip/ipv4';
import { Cidr6, formatCidr6 } from '../ip/ipv6';

/** The IPv4 table's family (the name every message uses when one table is meant). */
export const TABLE_FAMILY = 'ip';
export const TABLE_FAMILY6 = 'ip6';
export const TABLE_NAME = 'rudder';
export const MULTICAST = '224.0.0.0/4';
export const MULTICAST6 = 'ff00::/8';

export type MasqFamily = typeof TABLE_FAMILY | typeof TABLE_FAMILY6;
/** Both tables Rudder may own, for clean-up. */
export const TABLE_FAMILIES: readonly MasqFamily[] = [TABLE_FAMILY, TABLE_FAMILY6];

/**
 * The overlay of each family the network carries: IPv4 (`network` and
 * `subnet`, absent in an IPv6-only network) and `ipv6` (EnableIPv6).
 */
export type MasqParams = (
  | {
      /** The whole overlay (config Network). */
      network: Cidr;
      /** This host's lease. */
      subnet: Cidr;
    }
  | { network?: undefined; subnet?: undefined }
) & {
  /** IPv6Network and this host's IPv6 subnet, when EnableIPv6. */
  ipv6?: { network: Cidr6; subnet: Cidr6 } | undefined;
};

/** One family's rules in text form. */
interface FamilyRules {
  family: MasqFamily;
  network: string;
  subnet: string;
  multicast: string;
}

function familyRules(p: MasqParams): FamilyRules[] {
  const out: FamilyRules[] = [];
  if (p.network !== undefined) out.push({ family: TABLE_FAMILY, network: formatCidr(p.network), subnet: formatCidr(p.subnet), multicast: MULTICAST });
  if (p.ipv6 !== undefined) out.push({ family: TABLE_FAMILY6, network: formatCidr6(p.ipv6.network), subnet: formatCidr6(p.ipv6.subnet), multicast: MULTICAST6 });
  return out;
}

/** The families whose tables these params define, IPv4's first. */
export function masqFamilies(p: MasqParams): MasqFamily[] {
  return familyRules(p).map((r) => r.family);
}

function tableText(r: FamilyRules): string {
  const { family: f, network: net, subnet: own } = r;
  return [
    `table ${f} ${TABLE_NAME} {`,
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
    `\t\t${f} saddr ${net} ${f} daddr ${net} return`,
    `\t\t${f} saddr ${net} ${f} daddr != ${r.multicast} masquerade fully-random`,
    `\t\t${f} saddr != ${net} ${f} daddr ${own} return`,
    `\t\t${f} saddr != ${net} ${f} daddr ${net} masquerade fully-random`,
    `\t}`,
    `\tchain forward {`,
    `\t\ttype filter hook forward priority filter; policy accept;`,
    `\t\t${f} saddr ${net} accept`,
    `\t\t${f} daddr ${net} accept`,
    `\t}`,
    `}`,
  ].join('\n');
}

/**
 * One table's definition alone (what `nft list table <family> rudder` should
 * show, modulo formatting): the IPv4 table unless `family` says otherwise;
 * '' when the params have no such family.
 */
export function masqTable(p: MasqParams, family: MasqFamily = TABLE_FAMILY): string {
  const r = familyRules(p).find((x) => x.family === family);
  return r ? tableText(r) : '';
}

/** The `nft -f -` script that replaces every table of the params in one transaction. */
export function masqScript(p: MasqParams): string {
  const parts: string[] = [];
  for (const r of familyRules(p)) parts.push(`table ${r.family} ${TABLE_NAME} {}`, `delete table ${r.family} ${TABLE_NAME}`, tableText(r));
  return [...parts, ''].join('\n');
}

/** Removes one table (an error if it is absent: callers check first or ignore that). */
export function deleteScript(family: MasqFamily = TABLE_FAMILY): string {
  return `delete table ${family} ${TABLE_NAME}\n`;
}

/**
 * Canonical form of `nft list` output for comparison: no handles, comments
 * or blank lines, whitespace collapsed.
 */
export function normalizeRuleset(text: string): string {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').replace(/\s+/g, ' ').trim())
    .filter((l) => l !== '')
    .join('\n');
}

/**
 * Base chains at the forward hook with policy drop in tables other than ours,
 * from `nft list ruleset` text: "family table/chain" names.
 */
export function forwardDropChains(ruleset: string): string[] {
  const found: string[] = [];
  let table = '';
  let chain = '';
  for (const raw of ruleset.split('\n')) {
    const l = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^table (\S+) (\S+) \{/.exec(l))) table = `${m[1]} ${m[2]}`;
    else if ((m = /^chain (\S+) \{/.exec(l))) chain = m[1] as string;
    else if (/hook forward\b/.test(l) && /policy drop;/.test(l) && !TABLE_FAMILIES.some((f) => table === `${f} ${TABLE_NAME}`)) found.push(`${table}/${chain}`);
  }
  return found;
}
