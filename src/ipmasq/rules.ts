/**
 * The -ip-masq rules as nftables text (pure; unit-tested).
 *
 * Everything lives in one table of Rudder's own, `table ip rudder`, so it is
 * applied, checked and removed as a unit and never touches another
 * program's rules. The script replaces the table atomically: `nft -f` runs
 * the whole file as one transaction, and "add empty table; delete it; define
 * it" works whether or not a (possibly stale) table was there.
 *
 * postrouting (nat, priority srcnat = 100), flannel's rules:
 *   1. Network → Network                 return  (pod to pod keeps pod addresses)
 *   2. Network → not 224.0.0.0/4         masquerade (leaving the overlay; multicast is left alone)
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

export const TABLE_FAMILY = 'ip';
export const TABLE_NAME = 'rudder';
export const MULTICAST = '224.0.0.0/4';

export interface MasqParams {
  /** The whole overlay (config Network). */
  network: Cidr;
  /** This host's lease. */
  subnet: Cidr;
}

/** The table definition alone (what `nft list table ip rudder` should show, modulo formatting). */
export function masqTable(p: MasqParams): string {
  const net = formatCidr(p.network);
  const own = formatCidr(p.subnet);
  return [
    `table ${TABLE_FAMILY} ${TABLE_NAME} {`,
    `\tchain postrouting {`,
    `\t\ttype nat hook postrouting priority srcnat; policy accept;`,
    `\t\tip saddr ${net} ip daddr ${net} return`,
    `\t\tip saddr ${net} ip daddr != ${MULTICAST} masquerade fully-random`,
    `\t\tip saddr != ${net} ip daddr ${own} return`,
    `\t\tip saddr != ${net} ip daddr ${net} masquerade fully-random`,
    `\t}`,
    `\tchain forward {`,
    `\t\ttype filter hook forward priority filter; policy accept;`,
    `\t\tip saddr ${net} accept`,
    `\t\tip daddr ${net} accept`,
    `\t}`,
    `}`,
  ].join('\n');
}

/** The `nft -f -` script that replaces the table atomically. */
export function masqScript(p: MasqParams): string {
  return [
    `table ${TABLE_FAMILY} ${TABLE_NAME} {}`,
    `delete table ${TABLE_FAMILY} ${TABLE_NAME}`,
    masqTable(p),
    '',
  ].join('\n');
}

/** Removes the table (an error if it is absent: callers check first or ignore that). */
export function deleteScript(): string {
  return `delete table ${TABLE_FAMILY} ${TABLE_NAME}\n`;
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
    else if (/hook forward\b/.test(l) && /policy drop;/.test(l) && table !== `${TABLE_FAMILY} ${TABLE_NAME}`) found.push(`${table}/${chain}`);
  }
  return found;
}
