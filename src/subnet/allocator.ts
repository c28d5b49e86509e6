/**
 * Subnet allocation (pure): which subnet to try next, given the config and
 * the subnets already taken. The registry turns a choice into a lease with a
 * create-if-absent transaction, so a stale view here can only cost a retry,
 * never a double allocation.
 */
import type { Ipv6NetworkConfig, NetworkConfig } from '../config';
import { Cidr, cidrEquals, contains, formatCidr, formatIp, nthSubnet, subnetCount } from '../ip/ipv4';
import { Cidr6, contains6, formatCidr6, formatIp6, nthSubnet6, randomBelow, sizeOf6, subnetCount6 } from '../ip/ipv6';

/** Is `s` a subnet this config may hand out (right length, aligned, in [Min, Max])? */
export function subnetAllowed(cfg: NetworkConfig, s: Cidr): boolean {
  return (
    s.prefix === cfg.subnetLen &&
    contains(cfg.network, s.ip) &&
    s.ip >= cfg.subnetMin &&
    s.ip <= cfg.subnetMax &&
    (s.ip - cfg.subnetMin) % 2 ** (32 - cfg.subnetLen) === 0
  );
}

/** Number of subnets in [SubnetMin, SubnetMax]. */
export function rangeSize(cfg: NetworkConfig): number {
  return subnetCount(cfg.subnetMin, cfg.subnetMax, cfg.subnetLen);
}

export function describeRange(cfg: NetworkConfig): string {
  return `${rangeSize(cfg)} subnets of /${cfg.subnetLen} from ${formatIp(cfg.subnetMin)} to ${formatIp(cfg.subnetMax)} in ${formatCidr(cfg.network)}`;
}

/**
 * Picks a random free subnet, or null when the range is full. Random (not
 * first-free) so that hosts starting together rarely collide on one key.
 * `random` returns [0, 1).
 */
export function pickFreeSubnet(
  cfg: NetworkConfig,
  taken: readonly Cidr[],
  random: () => number = Math.random,
): Cidr | null {
  const total = rangeSize(cfg);
  const takenIdx = new Set<number>();
  const step = 2 ** (32 - cfg.subnetLen);
  for (const t of taken) {
    // Any taken block overlapping a candidate blocks it (leases of another SubnetLen).
    const lo = Math.max(cfg.subnetMin, t.ip);
    const hi = Math.min(cfg.subnetMax + step - 1, t.ip + 2 ** (32 - t.prefix) - 1);
    if (lo > hi) continue;
    const first = Math.floor((lo - cfg.subnetMin) / step);
    const last = Math.floor((hi - cfg.subnetMin) / step);
    for (let i = first; i <= last && i < total; i++) takenIdx.add(i);
  }
  const free = total - takenIdx.size;
  if (free <= 0) return null;
  // The k-th free index, walking from a random start: uniform without
  // materialising the free list (ranges can hold 2^22 subnets).
  if (takenIdx.size < total / 2) {
    for (;;) {
      const i = Math.floor(random() * total);
      if (!takenIdx.has(i)) return nthSubnet(cfg.subnetMin, cfg.subnetLen, i);
    }
  }
  let k = Math.floor(random() * free);
  for (let i = 0; i < total; i++) {
    if (takenIdx.has(i)) continue;
    if (k-- === 0) return nthSubnet(cfg.subnetMin, cfg.subnetLen, i);
  }
  return null;
}

export function isTaken(taken: readonly Cidr[], s: Cidr): boolean {
  return taken.some((t) => cidrEquals(t, s));
}

/** IPv6 (EnableIPv6): is `s` a subnet this config may hand out (right length, aligned, in [Min, Max])? */
export function subnetAllowed6(cfg: Ipv6NetworkConfig, s: Cidr6): boolean {
  return (
    s.prefix === cfg.subnetLen &&
    contains6(cfg.network, s.ip) &&
    s.ip >= cfg.subnetMin &&
    s.ip <= cfg.subnetMax &&
    (s.ip - cfg.subnetMin) % sizeOf6(cfg.subnetLen) === 0n
  );
}

/** Number of IPv6 subnets in [IPv6SubnetMin, IPv6SubnetMax] (up to 2^123: a bigint). */
export function rangeSize6(cfg: Ipv6NetworkConfig): bigint {
  return subnetCount6(cfg.subnetMin, cfg.subnetMax, cfg.subnetLen);
}

export function describeRange6(cfg: Ipv6NetworkConfig): string {
  return `${rangeSize6(cfg)} subnets of /${cfg.subnetLen} from ${formatIp6(cfg.subnetMin)} to ${formatIp6(cfg.subnetMax)} in ${formatCidr6(cfg.network)}`;
}

/**
 * Picks a random free IPv6 subnet, or null when the range is full. The
 * range may hold 2^60 subnets, so it is never listed: the taken blocks
 * become sorted, merged index intervals, and the k-th free index (k uniform
 * over the free count) is found by walking them — exact and uniform, in
 * O(taken · log taken), whatever the range's size.
 */
export function pickFreeSubnet6(
  cfg: Ipv6NetworkConfig,
  taken: readonly Cidr6[],
  random: () => number = Math.random,
): Cidr6 | null {
  const total = rangeSize6(cfg);
  const step = sizeOf6(cfg.subnetLen);
  const spans: [bigint, bigint][] = [];
  for (const t of taken) {
    // Any taken block overlapping a candidate blocks it (leases of another IPv6SubnetLen).
    const lo = t.ip > cfg.subnetMin ? t.ip : cfg.subnetMin;
    const tEnd = t.ip + sizeOf6(t.prefix) - 1n;
    const rEnd = cfg.subnetMax + step - 1n;
    const hi = tEnd < rEnd ? tEnd : rEnd;
    if (lo > hi) continue;
    spans.push([(lo - cfg.subnetMin) / step, (hi - cfg.subnetMin) / step]);
  }
  spans.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const s of spans) {
    const last = merged[merged.length - 1];
    if (last && s[0] <= last[1] + 1n) {
      if (s[1] > last[1]) last[1] = s[1];
    } else merged.push([s[0], s[1]]);
  }
  const used = merged.reduce((n, [a, b]) => n + (b - a + 1n), 0n);
  const free = total - used;
  if (free <= 0n) return null;
  // The k-th free index: every merged span at or below the running index shifts it up.
  let i = randomBelow(free, random);
  for (const [a, b] of merged) {
    if (a > i) break;
    i += b - a + 1n;
  }
  return nthSubnet6(cfg.subnetMin, cfg.subnetLen, i);
}
