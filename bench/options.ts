/**
 * The command line of `npm run bench` (bench/run.ts), and the choice of
 * variants it makes: pure, so the unit tests check them without a run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchParams } from './measure';

export interface Options {
  params: BenchParams;
  rounds: number;
  /** Variant ids or group names (limit, baseline, rudder, flannel, wireguard, ipv6) to keep; null = all. */
  only: string[] | null;
  pods: boolean;
  outDir: string;
  write: boolean;
  /** Another built checkout of Rudder: every rudder variant gets an "(A)" twin running its bin/rudder. */
  abBaseline: string | null;
  /**
   * --host-cpus: the CPU lists (taskset's syntax) host 1's and host 2's
   * processes are pinned to while measured, to model two machines; null:
   * the scheduler places them.
   */
  hostCpus: [string, string] | null;
  help: boolean;
}

export function usage(): string {
  return `usage: node dist/bench/run.js [options]   (as root; npm run bench -- [options] builds first)
  --rounds N          rounds of every measurement, median taken (default 3)
  --time S            iperf3 seconds per measurement (default 10)
  --omit S            iperf3 seconds omitted at the start (default 1)
  --pings N           pings per RTT measurement (default 50, 0.05 s apart)
  --only a,b          variant ids or groups: underlay,kvxlan,socat,rudder-udp,rudder-vxlan,
                      rudder-host-gw,rudder-wireguard,wireguard-go,flanneld-udp,flanneld-vxlan,
                      flanneld-host-gw, and over IPv6 underlay6,kvxlan6,rudder-udp6,
                      rudder-vxlan6,rudder-host-gw6,rudder-wireguard6; limit, baseline,
                      rudder (every rudder variant), flannel (every flanneld one), wireguard
                      (wireguard-go and rudder wireguard, with kvxlan and rudder-udp for the
                      issue 14 ratios), ipv6 (every IPv6 variant, with rudder-udp for the
                      issue 15 ratio)
  --pods              also measure rudder pod → pod
  --ab-baseline DIR   A/B: DIR is another built checkout of Rudder (bin/rudder, dist/,
                      native/build); each rudder variant gets a twin "rudder X (A)" run from
                      DIR, measured in the same rounds, and an A/B table (this build / DIR)
  --host-cpus L1/L2   pin every process of host 1 (daemons, iperf3, ping, tunnels) to the
                      CPUs in list L1 and host 2's to L2 (taskset syntax: "0/1", "0-3/4-7")
                      before each measurement: two machines instead of one shared CPU pool;
                      the kernel's softirq work stays where the kernel puts it
  --quick             1 round of 2 s, 20 pings: for development
  --out DIR           where latest.md/.svg/.png/.json go (default bench/results)
  --no-write          print only`;
}

/** Parses the bench's arguments; throws an Error naming the option on a bad one. */
export function parseBenchArgs(argv: readonly string[], defaultOutDir: string): Options {
  const o: Options = {
    params: { timeS: 10, omitS: 1, pings: 50, pingIntervalS: 0.05, udpLen: 64 },
    rounds: 3,
    only: null,
    pods: false,
    outDir: defaultOutDir,
    write: true,
    abBaseline: null,
    hostCpus: null,
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const eq = a.indexOf('=');
    const [k, inline] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const val = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new Error(`${k} needs a value\n${usage()}`);
      return v;
    };
    const num = (min: number): number => {
      const v = Number(val());
      if (!Number.isFinite(v) || v < min) throw new Error(`${k}: expected a number ≥ ${min}`);
      return v;
    };
    switch (k.replace(/^--?/, '')) {
      case 'rounds': o.rounds = Math.floor(num(1)); break;
      case 'time': o.params.timeS = num(1); break;
      case 'omit': o.params.omitS = num(0); break;
      case 'pings': o.params.pings = Math.floor(num(1)); break;
      case 'only': o.only = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case 'pods': o.pods = true; break;
      case 'ab-baseline': o.abBaseline = path.resolve(val()); break;
      case 'host-cpus': o.hostCpus = parseHostCpus(val()); break;
      case 'quick': o.rounds = 1; o.params.timeS = 2; o.params.pings = 20; break;
      case 'out': o.outDir = path.resolve(val()); break;
      case 'no-write': o.write = false; break;
      case 'help': case 'h': o.help = true; break;
      default: throw new Error(`unknown option ${a}\n${usage()}`);
    }
  }
  return o;
}

const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** The CPUs a list in taskset's syntax ("0", "0-3", "0,2-3") names, ascending; throws on a malformed list. */
export function cpuListCpus(list: string): number[] {
  if (!CPU_LIST.test(list)) throw new Error(`CPU list ${JSON.stringify(list)}: expected numbers and ranges, as "0", "0-3" or "0,2-3"`);
  const cpus = new Set<number>();
  for (const part of list.split(',')) {
    const [a, b = a] = part.split('-').map(Number) as [number, number?];
    if (b < a) throw new Error(`CPU list ${JSON.stringify(list)}: range ${part} runs backwards`);
    for (let c = a; c <= b; c++) cpus.add(c);
  }
  return [...cpus].sort((x, y) => x - y);
}

/** --host-cpus "L1/L2": host 1's and host 2's CPU lists; throws an Error naming the option and the value. */
export function parseHostCpus(v: string): [string, string] {
  const parts = v.split('/');
  try {
    if (parts.length !== 2) throw new Error('expected two CPU lists, host 1\'s and host 2\'s, joined by "/"');
    for (const l of parts) cpuListCpus(l);
  } catch (e) {
    throw new Error(`--host-cpus ${JSON.stringify(v)}: ${(e as Error).message} (as "0/1" or "0-3/4-7")`);
  }
  return [parts[0] as string, parts[1] as string];
}

/** --host-cpus against this machine: every CPU named must exist (0 .. ncpus-1). */
export function checkHostCpus(lists: readonly [string, string], ncpus: number): void {
  for (const l of lists) {
    const over = cpuListCpus(l).filter((c) => c >= ncpus);
    if (over.length) throw new Error(`--host-cpus ${lists.join('/')}: CPU ${over.join(', ')} does not exist here (CPUs 0-${ncpus - 1})`);
  }
}

/** The files a baseline checkout must have for its daemons to run. */
export function baselineFiles(dir: string): { bin: string; required: string[] } {
  const bin = path.join(dir, 'bin', 'rudder');
  return {
    bin,
    required: [bin, path.join(dir, 'dist', 'src', 'cli', 'main.js'), path.join(dir, 'native', 'build', 'Release', 'rudder_native.node')],
  };
}

/** The baseline's bin/rudder, or an error naming what is missing (not built: run ./build there). */
export function checkBaseline(dir: string, exists: (f: string) => boolean = fs.existsSync): string {
  const { bin, required } = baselineFiles(dir);
  const missing = required.filter((f) => !exists(f));
  if (missing.length) throw new Error(`--ab-baseline ${dir}: not a built Rudder checkout (missing ${missing.join(', ')}); run ./build there`);
  return bin;
}

/** What selection needs of a variant. */
export interface Selectable {
  id: string;
  group: string;
  /** For an A/B twin: the id of the variant it mirrors. */
  abTwinOf?: string;
  /** Further groups the variant belongs to (rudder wireguard: "wireguard" too). */
  alsoIn?: readonly string[];
}

/**
 * The variants `only` names, in their order: by id or by group (its own or
 * one of alsoIn); a group's companions (variant ids its ratios need, e.g.
 * wireguard's kvxlan and rudder-udp) come along with the group; an A/B
 * twin comes along with the variant it mirrors (or is named by its own id).
 * Throws on a name that matches nothing.
 */
export function selectVariants<V extends Selectable>(
  all: readonly V[],
  only: readonly string[] | null,
  companions: Readonly<Record<string, readonly string[]>> = {},
): V[] {
  if (only === null) return [...all];
  const groupsOf = (v: Selectable): string[] => [v.group, ...(v.alsoIn ?? [])];
  const unknown = only.filter((n) => !all.some((v) => v.id === n || groupsOf(v).includes(n)));
  if (unknown.length) {
    const groups = [...new Set(all.flatMap(groupsOf))];
    throw new Error(`unknown variant(s) ${unknown.join(', ')}; have ${all.map((v) => v.id).join(', ')} and groups ${groups.join(', ')}`);
  }
  const names = new Set([...only, ...only.flatMap((n) => companions[n] ?? [])]);
  const named = (v: Selectable): boolean => names.has(v.id) || groupsOf(v).some((g) => names.has(g));
  const byId = new Map(all.map((v) => [v.id, v]));
  return all.filter((v) => {
    if (named(v)) return true;
    const base = v.abTwinOf === undefined ? undefined : byId.get(v.abTwinOf);
    return base !== undefined && named(base);
  });
}
