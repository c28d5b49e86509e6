/**
 * Flags of `rudder sandbox` (pure). Same Go/GNU spellings as the daemon's
 * flags (`--hosts 3`, `-hosts=3`), parsed by the same table-driven parser;
 * no environment fallback (RUDDER_* variables belong to the daemon).
 */
import { BACKEND_TYPES, parseConfig, type NetworkConfig } from '../config';
import { overlaps, parseCidr, subnetCount, type Cidr } from '../ip/ipv4';
import { overlaps6, parseCidr6, subnetCount6, type Cidr6 } from '../ip/ipv6';
import { UNDERLAY_NETWORK, UNDERLAY_NETWORK_V6 } from '../topology/cluster';
import { RudderError } from '../errors';
import { formatUsage, HELP_FLAG, parseFlags, type FlagSpec } from '../util/flags';

export const SANDBOX_BACKENDS = BACKEND_TYPES;
export type SandboxBackend = (typeof SANDBOX_BACKENDS)[number];

/** Namespaces are `<name><tag>-<role>`: the harness allows 1..6 chars [a-z0-9] starting with a letter. */
export const DEFAULT_SANDBOX_NAME = 'rsb';
export const DEFAULT_SANDBOX_NETWORK = '10.0.0.0/16';
/** The IPv6 overlay of --ipv6 / --ipv6-only (fd00::/8: unique local addresses). */
export const DEFAULT_SANDBOX_IPV6_NETWORK = 'fd10::/48';
/** Each refresh pings every ordered pair of pods: keep N² sane on a laptop. */
export const MAX_SANDBOX_HOSTS = 32;

export interface SandboxFlags {
  hosts: number;
  backend: SandboxBackend;
  network: string;
  /** --ipv6: dual-stack (EnableIPv6 beside IPv4). */
  ipv6: boolean;
  /** --ipv6-only: EnableIPv4 false, EnableIPv6 true. */
  ipv6Only: boolean;
  /** The IPv6Network with --ipv6 or --ipv6-only. */
  ipv6Network: string;
  check: boolean;
  name: string;
  /** Milliseconds between refreshes of the live table. */
  refreshMs: number;
  /** Daemon verbosity (-v of each rudder). */
  v: number;
  /** How long --check waits for every pair to answer (ms). */
  giveUpMs: number;
  /** The daemon to run; undefined: bin/rudder of this checkout. */
  rudderBin: string | undefined;
  help: boolean;
}

export const SANDBOX_FLAGS: readonly FlagSpec[] = [
  { name: 'hosts', kind: 'int', min: 1, max: MAX_SANDBOX_HOSTS, default: '3', env: false, help: 'number of hosts (network namespaces), each with a rudder daemon and a pod' },
  { name: 'backend', kind: 'string', default: 'udp', env: false, help: 'backend of the network config: udp, vxlan, host-gw or wireguard' },
  { name: 'network', kind: 'string', default: DEFAULT_SANDBOX_NETWORK, env: false, help: 'overlay network (the config\'s Network), an IPv4 CIDR such as 10.0.0.0/16' },
  { name: 'ipv6', kind: 'bool', env: false, help: 'dual-stack: IPv6 beside IPv4 (EnableIPv6), an IPv6 underlay (2001:2::N) beside the IPv4 one, pods with both addresses' },
  { name: 'ipv6-only', kind: 'bool', env: false, help: 'IPv6 only (EnableIPv4 false, EnableIPv6 true): pods with an IPv6 address alone' },
  { name: 'ipv6-network', kind: 'string', default: DEFAULT_SANDBOX_IPV6_NETWORK, env: false, help: 'IPv6 overlay network (the config\'s IPv6Network) with --ipv6 or --ipv6-only, an IPv6 CIDR such as fd10::/48' },
  { name: 'check', kind: 'bool', env: false, help: 'set up, verify that every pod reaches every other pod, print the table once, tear down; exit 0 or 1 with the failing pairs' },
  { name: 'name', kind: 'string', default: DEFAULT_SANDBOX_NAME, env: false, help: 'namespace name prefix (1-6 chars [a-z0-9], starting with a letter); one running sandbox per name' },
  { name: 'refresh', kind: 'duration', default: '3s', min: 500, env: false, help: 'how often the live table is refreshed' },
  { name: 'give-up', kind: 'duration', default: '90s', min: 1000, env: false, help: 'how long --check waits for every pod to reach every other before it reports the pairs that fail' },
  { name: 'rudder-bin', kind: 'string', env: false, help: 'the daemon each host runs (default: bin/rudder of this checkout), e.g. another build to try' },
  { name: 'v', kind: 'int', min: 0, max: 10, default: '0', env: false, help: 'verbosity of the daemons\' logs (their -v)' },
  HELP_FLAG,
];

export function sandboxUsage(): string {
  return formatUsage(
    [
      'Usage: sudo rudder sandbox [--hosts N] [--backend udp|vxlan|host-gw|wireguard] [--network CIDR] [--ipv6 | --ipv6-only] [--check]',
      '',
      'A whole Rudder cluster on this machine, inside network namespaces: etcd, N hosts on an',
      'underlay bridge (198.18.0.0/15), one rudder daemon per host and one pod per host behind a',
      'docker0-like bridge built from the host\'s subnet file. Shows a live table of the hosts and',
      'of pod-to-pod reachability; Ctrl-C removes everything it made. Needs root.',
    ].join('\n'),
    SANDBOX_FLAGS,
  ).replace(/ \(env [A-Z_]+\)/g, '');
}

function flagErr(message: string): RudderError {
  return new RudderError('E_FLAG', message);
}

/** Parses the arguments after `sandbox`. Throws E_FLAG (exit 2 with sandboxUsage()). */
export function sandboxFlags(argv: readonly string[]): SandboxFlags {
  const p = parseFlags(SANDBOX_FLAGS, argv, {});
  const help = p.values.get('help') === true;
  const flags: SandboxFlags = {
    hosts: p.values.get('hosts') as number,
    backend: p.values.get('backend') as SandboxBackend,
    network: p.values.get('network') as string,
    ipv6: p.values.get('ipv6') === true,
    ipv6Only: p.values.get('ipv6-only') === true,
    ipv6Network: p.values.get('ipv6-network') as string,
    check: p.values.get('check') === true,
    name: p.values.get('name') as string,
    refreshMs: p.values.get('refresh') as number,
    v: p.values.get('v') as number,
    giveUpMs: p.values.get('give-up') as number,
    rudderBin: (p.values.get('rudder-bin') as string | undefined) || undefined,
    help,
  };
  if (help) return flags;
  if (p.rest.length > 0) {
    throw flagErr(`sandbox: unexpected argument ${JSON.stringify(p.rest[0])}: the sandbox takes only flags`);
  }
  if (!(SANDBOX_BACKENDS as readonly string[]).includes(flags.backend)) {
    throw flagErr(`--backend=${JSON.stringify(flags.backend)}: expected one of ${SANDBOX_BACKENDS.join(', ')}`);
  }
  if (!/^[a-z][a-z0-9]{0,5}$/.test(flags.name)) {
    throw flagErr(`--name=${JSON.stringify(flags.name)}: expected 1 to 6 characters [a-z0-9], starting with a letter (namespaces are NAME<tag>-h1, ...)`);
  }
  if (flags.ipv6 && flags.ipv6Only) {
    throw flagErr('--ipv6 and --ipv6-only: expected one of them (--ipv6: dual-stack, --ipv6-only: no IPv4 overlay)');
  }
  if (flags.ipv6Only && p.given.has('network')) {
    throw flagErr(`--network=${JSON.stringify(flags.network)} with --ipv6-only: an IPv6-only network has no IPv4 overlay; expected --ipv6-network instead`);
  }
  if (!flags.ipv6 && !flags.ipv6Only && p.given.has('ipv6-network')) {
    throw flagErr(`--ipv6-network=${JSON.stringify(flags.ipv6Network)}: expected --ipv6 (dual-stack) or --ipv6-only with it`);
  }
  const v6 = flags.ipv6 || flags.ipv6Only;
  // Each family's keys checked alone, so an error names the flag behind it.
  if (!flags.ipv6Only) {
    let cfg: NetworkConfig;
    try {
      cfg = parseConfig(JSON.stringify(sandboxConfig({ network: flags.network, backend: flags.backend })));
    } catch (e) {
      throw flagErr(`--network=${JSON.stringify(flags.network)}: ${(e as Error).message.replace(/^config: /, '')}`);
    }
    const underlay = parseCidr(UNDERLAY_NETWORK) as Cidr;
    if (overlaps(cfg.network, underlay)) {
      throw flagErr(`--network=${JSON.stringify(flags.network)}: expected a network outside ${UNDERLAY_NETWORK}, which the sandbox's underlay uses`);
    }
    const room = subnetCount(cfg.subnetMin, cfg.subnetMax, cfg.subnetLen);
    if (room < flags.hosts) {
      throw flagErr(`--network=${JSON.stringify(flags.network)}: has room for ${room} /${cfg.subnetLen} subnet(s), not ${flags.hosts} hosts: expected a larger network (e.g. ${DEFAULT_SANDBOX_NETWORK}) or fewer --hosts`);
    }
  }
  if (v6) {
    let cfg6: NonNullable<NetworkConfig['ipv6']>;
    try {
      const c = parseConfig(JSON.stringify(sandboxConfig({ network: flags.network, backend: flags.backend, ipv6Only: true, ipv6Network: flags.ipv6Network })));
      cfg6 = c.ipv6 as NonNullable<NetworkConfig['ipv6']>;
    } catch (e) {
      throw flagErr(`--ipv6-network=${JSON.stringify(flags.ipv6Network)}: ${(e as Error).message.replace(/^config: /, '')}`);
    }
    const underlay6 = parseCidr6(UNDERLAY_NETWORK_V6) as Cidr6;
    if (overlaps6(cfg6.network, underlay6)) {
      throw flagErr(`--ipv6-network=${JSON.stringify(flags.ipv6Network)}: expected a network outside ${UNDERLAY_NETWORK_V6}, which the sandbox's IPv6 underlay uses`);
    }
    const room = subnetCount6(cfg6.subnetMin, cfg6.subnetMax, cfg6.subnetLen);
    if (room < BigInt(flags.hosts)) {
      throw flagErr(`--ipv6-network=${JSON.stringify(flags.ipv6Network)}: has room for ${room} /${cfg6.subnetLen} subnet(s), not ${flags.hosts} hosts: expected a larger network (e.g. ${DEFAULT_SANDBOX_IPV6_NETWORK}) or fewer --hosts`);
    }
  }
  return flags;
}

/** The config the sandbox publishes, as flannel's keys. */
export interface SandboxConfig {
  Network?: string;
  EnableIPv4?: false;
  EnableIPv6?: true;
  IPv6Network?: string;
  Backend: { Type: string };
}

/** The network config the sandbox publishes: IPv4 alone, dual-stack (--ipv6) or IPv6-only (--ipv6-only). */
export function sandboxConfig(f: Pick<SandboxFlags, 'network' | 'backend'> & Partial<Pick<SandboxFlags, 'ipv6' | 'ipv6Only' | 'ipv6Network'>>): SandboxConfig {
  const backend = { Type: f.backend };
  const ipv6Network = f.ipv6Network ?? DEFAULT_SANDBOX_IPV6_NETWORK;
  if (f.ipv6Only) return { EnableIPv4: false, EnableIPv6: true, IPv6Network: ipv6Network, Backend: backend };
  if (f.ipv6) return { Network: f.network, EnableIPv6: true, IPv6Network: ipv6Network, Backend: backend };
  return { Network: f.network, Backend: backend };
}

/** The address families a sandbox carries, IPv4's first. */
export function sandboxFamilies(f: Pick<SandboxFlags, 'ipv6' | 'ipv6Only'>): Family[] {
  return f.ipv6Only ? ['ipv6'] : f.ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
}

export type Family = 'ipv4' | 'ipv6';
