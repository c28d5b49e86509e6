/**
 * The subnet file (`-subnet-file`, default /run/rudder/subnet.env), both
 * ways: the daemon's writer and the one strict parser that every reader
 * uses (the daemon's memory of its subnet, `docker-opts`, `cni-config`, the
 * topology and the sandbox). What Docker (--bip/--mtu), systemd
 * (EnvironmentFile=) and CNI read; sourceable by sh:
 *
 *   RUDDER_NETWORK=10.0.0.0/16
 *   RUDDER_SUBNET=10.0.5.1/24      the lease's first host address, the lease's length
 *   RUDDER_MTU=1472
 *   RUDDER_IPMASQ=false
 *
 * Written atomically (temp file in the same directory, fsync, rename) so a
 * reader never sees a partial file. With IPv6 on, RUDDER_IPV6_NETWORK and
 * RUDDER_IPV6_SUBNET (fd00:0:0:5::1/64, the same first-host form) follow the
 * IPv4 pair; with IPv4 off (IPv6-only) the IPv4 pair is absent, and the
 * reader's `ipv4` is false (its `network`/`subnet`/`address` are then the
 * empty 0.0.0.0/0).
 *
 * flanneld's subnet file (`-flannel-subnet-file`, default
 * /run/flannel/subnet.env) has the same shape with FLANNEL_ keys; the same
 * strict parser reads it (`flavour: 'flannel'`), for migration in place.
 */
import { promises as fs } from 'node:fs';
import { isIPv6 } from 'node:net';
import { RudderError } from '../errors';
import { writeFileAtomic } from '../util/atomic-write';
import type { FlagSpec } from '../util/flags';
import { Cidr, firstHost, formatCidr, formatIp, maskOf, parseCidr, parseIp } from '../ip/ipv4';
import { Cidr6, containsCidr6, firstHost6, formatCidr6, formatIp6, parseCidr6 } from '../ip/ipv6';
import { type NetworkConfig, ipv4Enabled } from '../config';
import type { Lease } from './lease';

export const DEFAULT_SUBNET_FILE = '/run/rudder/subnet.env';
export const DEFAULT_FLANNEL_SUBNET_FILE = '/run/flannel/subnet.env';

/** Whose file: Rudder's (RUDDER_ keys) or flanneld's (FLANNEL_ keys). */
export type SubnetFileFlavour = 'rudder' | 'flannel';

/** `-subnet-file` of the commands that read the file (docker-opts, cni-config); unset: the daemon's -subnet-file. */
export const SUBNET_FILE_TO_READ: FlagSpec = {
  name: 'subnet-file',
  kind: 'string',
  env: false,
  help: `the subnet file to read (default: the daemon's -subnet-file, ${DEFAULT_SUBNET_FILE})`,
};

/** What the daemon writes. */
export interface SubnetFileContents {
  network: Cidr;
  /** The lease (network address and length), e.g. 10.0.5.0/24. */
  subnet: Cidr;
  mtu: number;
  ipMasq: boolean;
  /** RUDDER_IPV6_NETWORK, e.g. fd00::/48 (IPv6 on). */
  ipv6Network?: string;
  /** RUDDER_IPV6_SUBNET, e.g. fd00:0:0:5::1/64 (IPv6 on). */
  ipv6Subnet?: string;
}

/** What a reader gets. */
export interface SubnetFile extends SubnetFileContents {
  /** False for an IPv6-only file (no RUDDER_NETWORK/RUDDER_SUBNET); network, subnet and address are then 0.0.0.0/0. */
  ipv4: boolean;
  /** RUDDER_SUBNET as written: the bridge address with the lease's length, e.g. 10.0.5.1/24. */
  address: Cidr;
  /** RUDDER_IPV6_NETWORK parsed (with RUDDER_IPV6_SUBNET, both or neither). */
  ipv6NetworkCidr?: Cidr6;
  /** The IPv6 lease: RUDDER_IPV6_SUBNET with host bits masked off, e.g. fd00:0:0:5::/64. */
  ipv6Lease?: Cidr6;
  /** RUDDER_IPV6_SUBNET's address as written, with the lease's length (fd00:0:0:5::1/64). */
  ipv6Address?: Cidr6;
  /** Every KEY=value line, quotes removed. */
  raw: ReadonlyMap<string, string>;
}

export interface ParseOptions {
  /**
   * Every key the daemon writes must be there (RUDDER_IPMASQ too, which a
   * hand-written file may leave out to mean false): for checking the
   * daemon's own output.
   */
  complete?: boolean;
  /** 'flannel': read flanneld's file (FLANNEL_NETWORK, ...); the result's fields are the same. */
  flavour?: SubnetFileFlavour;
}

/** `RUDDER_SUBNET`'s text for a lease: its first host address with its length. */
export function subnetAddress(lease: Cidr): string {
  return `${formatIp(firstHost(lease))}/${lease.prefix}`;
}

/** `RUDDER_IPV6_SUBNET`'s text for an IPv6 lease: its first host address (`::1`) with its length. */
export function ipv6SubnetAddress(lease: Cidr6): string {
  return `${formatIp6(firstHost6(lease))}/${lease.prefix}`;
}

/** The empty IPv4 network of an IPv6-only file: `formatSubnetFile` leaves the IPv4 pair out. */
export const NO_IPV4_NETWORK: Cidr = { ip: 0, prefix: 0 };

/** The file's text (pure). */
export function formatSubnetFile(c: SubnetFileContents): string {
  const v6only = c.network.prefix === 0 && c.ipv6Network !== undefined;
  const lines = v6only ? [] : [`RUDDER_NETWORK=${formatCidr(c.network)}`, `RUDDER_SUBNET=${subnetAddress(c.subnet)}`];
  if (c.ipv6Network !== undefined) lines.push(`RUDDER_IPV6_NETWORK=${c.ipv6Network}`);
  if (c.ipv6Subnet !== undefined) lines.push(`RUDDER_IPV6_SUBNET=${c.ipv6Subnet}`);
  lines.push(`RUDDER_MTU=${c.mtu}`, `RUDDER_IPMASQ=${c.ipMasq}`, '');
  return lines.join('\n');
}

function fileErr(message: string, cause?: unknown): RudderError {
  return new RudderError('E_SUBNET_FILE', message, cause === undefined ? undefined : { cause });
}

function ipv6Cidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const len = s.slice(slash + 1);
  return isIPv6(s.slice(0, slash)) && /^\d{1,3}$/.test(len) && Number(len) <= 128;
}

/**
 * Parses and checks the file's text (pure). `source` names the file in
 * errors, which also name the line or key, the value as written and what
 * was expected: `/run/rudder/subnet.env: RUDDER_MTU=big: expected ...`.
 */
export function parseSubnetFile(text: string, source: string, opts: ParseOptions = {}): SubnetFile {
  const raw = new Map<string, string>();
  const lineOf = new Map<string, number>();
  text.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(t);
    if (!m) throw fileErr(`${source}: line ${i + 1}: ${JSON.stringify(line)}: expected KEY=value, a comment or a blank line`);
    const key = m[1] as string;
    if (raw.has(key)) throw fileErr(`${source}: line ${i + 1}: ${key} given twice (first on line ${lineOf.get(key)}): expected each key once`);
    raw.set(key, (m[2] as string).trim().replace(/^"(.*)"$/, '$1'));
    lineOf.set(key, i + 1);
  });
  const flavour = opts.flavour ?? 'rudder';
  const P = flavour === 'flannel' ? 'FLANNEL_' : 'RUDDER_';
  const bad = (key: string, expected: string): RudderError => fileErr(`${source}: ${P}${key}=${raw.get(P + key) ?? ''}: expected ${expected}`);
  const need = (key: string): string => {
    const v = raw.get(P + key);
    if (v === undefined || v === '') throw fileErr(`${source}: ${P}${key} missing (is this a file written by ${flavour === 'flannel' ? 'flanneld' : 'rudder'}?)`);
    return v;
  };

  // IPv6-only: no IPv4 pair at all, and the IPv6 pair in its place.
  const v6only = !raw.has(`${P}NETWORK`) && !raw.has(`${P}SUBNET`) && raw.has(`${P}IPV6_NETWORK`);
  const networkS = v6only ? '0.0.0.0/0' : need('NETWORK');
  const subnetS = v6only ? '0.0.0.0/1' : need('SUBNET');
  const mtuS = need('MTU');
  const masqS = opts.complete ? need('IPMASQ') : (raw.get(`${P}IPMASQ`) ?? 'false');

  const network = parseCidr(networkS, true);
  if (!network || (!v6only && (network.prefix < 1 || network.prefix > 30))) throw bad('NETWORK', 'a network CIDR such as 10.0.0.0/16 (length 1 to 30)');
  const subnet = parseCidr(subnetS); // the lease: host bits masked off
  const host = parseIp(subnetS.slice(0, subnetS.indexOf('/')));
  if (!subnet || host === null || subnet.prefix > 30 || subnet.prefix <= network.prefix) {
    throw bad('SUBNET', `an address/length such as 10.0.5.1/24, longer than ${P}NETWORK's /${network.prefix} and at most /30`);
  }
  const address: Cidr = { ip: host, prefix: subnet.prefix };
  if (((subnet.ip & maskOf(network.prefix)) >>> 0) !== network.ip) {
    throw bad('SUBNET', `an address inside ${P}NETWORK=${networkS}`);
  }
  if (!/^\d+$/.test(mtuS) || Number(mtuS) < 68 || Number(mtuS) > 65535) throw bad('MTU', 'an integer between 68 and 65535');
  if (masqS !== 'true' && masqS !== 'false') throw bad('IPMASQ', 'true or false');

  const out: SubnetFile = v6only
    ? { ipv4: false, network: NO_IPV4_NETWORK, subnet: NO_IPV4_NETWORK, address: NO_IPV4_NETWORK, mtu: Number(mtuS), ipMasq: masqS === 'true', raw }
    : { ipv4: true, network, subnet, address, mtu: Number(mtuS), ipMasq: masqS === 'true', raw };
  for (const [key, field, example] of [
    ['IPV6_NETWORK', 'ipv6Network', 'fd00::/48'],
    ['IPV6_SUBNET', 'ipv6Subnet', 'fd00:0:0:5::1/64'],
  ] as const) {
    const v = raw.get(P + key);
    if (v === undefined) continue;
    if (!ipv6Cidr(v)) throw bad(key, `an IPv6 address/length such as ${example}`);
    out[field] = v;
  }
  if (out.ipv6Network === undefined && out.ipv6Subnet === undefined) return out;
  if (out.ipv6Network === undefined) throw fileErr(`${source}: ${P}IPV6_NETWORK missing: expected it beside ${P}IPV6_SUBNET`);
  if (out.ipv6Subnet === undefined) throw fileErr(`${source}: ${P}IPV6_SUBNET missing: expected it beside ${P}IPV6_NETWORK`);
  const net6 = parseCidr6(out.ipv6Network, true);
  if (!net6 || net6.prefix < 1 || net6.prefix > 123) throw bad('IPV6_NETWORK', 'an IPv6 network CIDR such as fd00::/48 (no host bits, length 1 to 123)');
  const addr6 = parseCidr6(out.ipv6Subnet) as Cidr6; // form checked above; host bits masked off
  if (addr6.prefix > 124 || addr6.prefix <= net6.prefix || !containsCidr6(net6, addr6)) {
    throw bad('IPV6_SUBNET', `an address/length inside ${P}IPV6_NETWORK=${out.ipv6Network}, longer than its /${net6.prefix} and at most /124`);
  }
  const slash = out.ipv6Subnet.indexOf('/');
  return { ...out, ipv6NetworkCidr: net6, ipv6Lease: addr6, ipv6Address: { ip: parseIp6Strict(out.ipv6Subnet.slice(0, slash)), prefix: addr6.prefix } };
}

function parseIp6Strict(s: string): bigint {
  const c = parseCidr6(`${s}/128`);
  if (!c) throw new RudderError('E_INTERNAL', `IPv6 address ${s} passed the form check but does not parse`);
  return c.ip;
}

/** Reads and parses the file; an unreadable file is E_SUBNET_FILE naming it, with the system's code as `errno`. */
export async function readSubnetFile(file: string, opts: ParseOptions = {}): Promise<SubnetFile> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new SubnetFileUnreadable(file, e);
  }
  return parseSubnetFile(text, file, opts);
}

/** The subnet file cannot be read; `errno` is the system's code (ENOENT: not written yet). */
export class SubnetFileUnreadable extends RudderError {
  readonly errno: string | undefined;
  constructor(file: string, cause: unknown) {
    super('E_SUBNET_FILE', `cannot read ${file}: ${(cause as Error).message} (the daemon writes it once it has a lease; is rudder running? see -subnet-file)`, { cause });
    this.errno = (cause as NodeJS.ErrnoException).code;
  }
}

export async function writeSubnetFile(file: string, c: SubnetFileContents): Promise<void> {
  try {
    await writeFileAtomic(file, formatSubnetFile(c));
  } catch (e) {
    throw fileErr(`cannot write subnet file ${file}: ${(e as Error).message}`, e);
  }
}

/** The subnets of an earlier run, each family on its own (null: not in the file). */
export interface RememberedSubnets {
  readonly subnet: Cidr | null;
  readonly ipv6Subnet: Cidr6 | null;
}

/** As readRememberedSubnet, both families: null when there is no valid file. */
export async function readRememberedSubnets(file: string, onInvalid?: (e: unknown) => void, flavour: SubnetFileFlavour = 'rudder'): Promise<RememberedSubnets | null> {
  try {
    const f = await readSubnetFile(file, { flavour });
    return { subnet: f.ipv4 ? f.subnet : null, ipv6Subnet: f.ipv6Lease ?? null };
  } catch (e) {
    if (!(e instanceof SubnetFileUnreadable)) onInvalid?.(e);
    return null;
  }
}

/**
 * The lease remembered from an earlier run, or null when there is no file.
 * An invalid file is no memory either (the daemon overwrites it once it
 * has a lease); `onInvalid` hears why. `flavour` 'flannel' reads flanneld's.
 */
export async function readRememberedSubnet(file: string, onInvalid?: (e: unknown) => void, flavour: SubnetFileFlavour = 'rudder'): Promise<Cidr | null> {
  try {
    const f = await readSubnetFile(file, { flavour });
    return f.ipv4 ? f.subnet : null;
  } catch (e) {
    if (!(e instanceof SubnetFileUnreadable)) onInvalid?.(e);
    return null;
  }
}

/** What the daemon writes for its config and lease (both families; IPv4 pair absent when IPv4 is off). */
export function subnetFileOf(config: NetworkConfig, lease: Lease, mtu: number, ipMasq: boolean): SubnetFileContents {
  const v4: SubnetFileContents = ipv4Enabled(config)
    ? { network: config.network, subnet: lease.subnet, mtu, ipMasq }
    : { network: NO_IPV4_NETWORK, subnet: NO_IPV4_NETWORK, mtu, ipMasq };
  if (!config.ipv6 || lease.ipv6Subnet === undefined) return v4;
  return { ...v4, ipv6Network: formatCidr6(config.ipv6.network), ipv6Subnet: ipv6SubnetAddress(lease.ipv6Subnet) };
}
