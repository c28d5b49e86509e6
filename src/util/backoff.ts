/** Jittered exponential backoff: 0.5 s doubling to 10 s, ±50 %. */
export function backoffMs(failures: number, random: () => number = Math.random): number {
  const base = Math.min(10_000, 500 * 2 ** Math.min(failures - 1, 5));
  return Math.round(base * (0.5 + random()));
}
