/**
 * Subnet allocation (pure): which subnet to try next, given the config and
 * the subnets already taken. The registry turns a choice into a lease with a
 * create-if-absent transaction, so a stale view here can only cost a retry,
 * never a double allocation.
 */
import type { NetworkConfig } from '../config';
import { Cidr, cidrEquals, contains, formatCidr, formatIp, nthSubnet, subnetCount } from '../ip/ipv4';

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
