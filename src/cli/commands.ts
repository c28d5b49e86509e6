/**
 * Subcommands that talk to etcd or check files: `config check|get|set`,
 * `leases` (they share the daemon's etcd flags) and `docker-opts`.
 */
import { readFileSync, existsSync } from 'node:fs';
import { configToJson, parseConfig } from '../config';
import { RudderError } from '../errors';
import { formatCidr, formatIp } from '../ip/ipv4';
import { formatCidr6, formatIp6 } from '../ip/ipv6';
import { hasIpv4 } from '../subnet/lease';
import { parseSubnetFile, readSubnetFile, SUBNET_FILE_TO_READ, type SubnetFile } from '../subnet/file';
import { formatUsage, HELP_FLAG, parseFlags, type FlagSpec } from '../util/flags';
import type { LeaseRecord, Registry } from '../subnet/registry';
import { configKey } from '../subnet/registry';
import { shortHostId } from '../subnet/host-id';

export interface Out {
  out(s: string): void;
  err(s: string): void;
}

/** `rudder config check FILE`: validates offline and prints the config with defaults. */
export function configCheck(args: readonly string[], io: Out): number {
  const file = args[0];
  if (file === undefined || args.length > 1) throw new RudderError('E_FLAG', 'config check: expected exactly one argument, the config file (- for standard input)');
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new RudderError('E_CONFIG', `config check: cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const cfg = parseConfig(text);
  io.out(JSON.stringify(configToJson(cfg), null, 2));
  io.err(`${file}: valid`);
  return 0;
}

export async function configGet(reg: Registry, prefix: string, io: Out): Promise<number> {
  const text = await reg.getConfig();
  if (text === null) {
    io.err(`no network config at ${configKey(prefix)}`);
    return 1;
  }
  io.out(text.trim());
  try {
    parseConfig(text);
  } catch (e) {
    io.err(`warning: the stored config is invalid: ${(e as Error).message}`);
    return 1;
  }
  return 0;
}

/** `rudder config set JSON|FILE [--if-absent]`: validates before writing. */
export async function configSet(reg: Registry, prefix: string, operands: readonly string[], ifAbsent: boolean, io: Out): Promise<number> {
  const arg = operands[0];
  if (arg === undefined || operands.length > 1) throw new RudderError('E_FLAG', 'config set: expected one argument, a JSON config or a file holding one (- for standard input), and optionally --if-absent');
  let text: string;
  if (arg.trimStart().startsWith('{')) text = arg;
  else if (arg === '-' || existsSync(arg)) text = readFileSync(arg === '-' ? 0 : arg, 'utf8');
  else throw new RudderError('E_FLAG', `config set: ${JSON.stringify(arg)} is neither a JSON object nor a readable file`);
  parseConfig(text); // throws with key, value, expected form
  const wrote = await reg.putConfig(text.trim(), ifAbsent);
  io.err(wrote ? `config written to ${configKey(prefix)}` : `a config already exists at ${configKey(prefix)}; left unchanged (--if-absent)`);
  return 0;
}

function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** `rudder leases`: a table of every lease; a HOST column (identity, 8 characters) once any lease has one. */
export async function leasesTable(reg: Pick<Registry, 'listLeases' | 'timeToLive'>, io: Out): Promise<number> {
  const list = await reg.listLeases();
  const withHost = list.records.some((r) => r.lease.hostId !== undefined);
  // IPv6 columns once any lease has an IPv6 subnet (dual-stack or IPv6-only); IPv4-only output is as it was.
  const withV6 = list.records.some((r) => r.lease.ipv6Subnet !== undefined);
  const rows: string[][] = [['SUBNET', ...(withV6 ? ['IPV6 SUBNET'] : []), 'PUBLIC IP', ...(withV6 ? ['PUBLIC IPV6'] : []), 'BACKEND', 'EXPIRES IN', ...(withHost ? ['HOST'] : [])]];
  const v6ip = (r: LeaseRecord): bigint => r.lease.ipv6Subnet?.ip ?? -1n;
  const sorted = [...list.records].sort((a, b) => a.lease.subnet.ip - b.lease.subnet.ip || (v6ip(a) < v6ip(b) ? -1 : v6ip(a) > v6ip(b) ? 1 : 0));
  const ttls = await Promise.all(sorted.map((r) => (r.etcdLeaseId === '0' ? Promise.resolve(null) : reg.timeToLive(r.etcdLeaseId))));
  sorted.forEach((r, i) => {
    const ttl = ttls[i];
    const l = r.lease;
    rows.push([
      withV6 && !hasIpv4(l) ? '-' : formatCidr(l.subnet),
      ...(withV6 ? [l.ipv6Subnet ? formatCidr6(l.ipv6Subnet) : '-'] : []),
      withV6 && l.publicIP === 0 ? '-' : formatIp(l.publicIP),
      ...(withV6 ? [l.publicIPv6 !== undefined ? formatIp6(l.publicIPv6) : '-'] : []),
      r.lease.backendType,
      r.etcdLeaseId === '0' ? 'reservation' : ttl === null || ttl === undefined ? 'expired' : fmtDuration(ttl),
      ...(withHost ? [shortHostId(r.lease.hostId)] : []),
    ]);
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  for (const r of rows) io.out(r.map((v, c) => v.padEnd(widths[c] ?? 0)).join('  ').trimEnd());
  for (const inv of list.invalid) io.err(`invalid entry ${inv.key}: ${inv.reason}`);
  if (list.records.length === 0) io.err('no leases');
  return 0;
}

// ------------------------------------------------------------- docker-opts

/**
 * Docker daemon options for this host's subnet file (pure): `--bip` (the
 * bridge address = RUDDER_SUBNET), `--mtu` (RUDDER_MTU) and, when Rudder
 * masquerades itself (RUDDER_IPMASQ=true), `--ip-masq=false` so that Docker
 * does not masquerade the same traffic a second time. The single source of
 * truth for packaging/docker-opts.sh, which calls `rudder docker-opts`.
 */
export function dockerOptions(text: string, source: string): string[] {
  return dockerOptionsOf(parseSubnetFile(text, source));
}

function dockerOptionsOf(f: SubnetFile): string[] {
  const opts = f.ipv4 ? [`--bip=${formatIp(f.address.ip)}/${f.address.prefix}`] : [];
  // IPv6 on: Docker's bridge takes its containers' IPv6 addresses from the lease as well.
  if (f.ipv6Lease) opts.push('--ipv6', `--fixed-cidr-v6=${formatCidr6(f.ipv6Lease)}`);
  opts.push(`--mtu=${f.mtu}`);
  if (f.ipMasq) opts.push('--ip-masq=false');
  return opts;
}

export const DOCKER_OPTS_FLAGS: readonly FlagSpec[] = [
  SUBNET_FILE_TO_READ,
  { name: 'format', kind: 'string', default: 'args', env: false, help: '"args": the options on one line; "env": DOCKER_OPTS="..." for systemd\'s EnvironmentFile=' },
  HELP_FLAG,
];

export function dockerOptsUsage(): string {
  return formatUsage('Usage: rudder docker-opts [-subnet-file=FILE] [-format=args|env]\n\nPrints the dockerd options for this host\'s Rudder subnet (--bip, --mtu, and --ip-masq=false when RUDDER_IPMASQ=true).', DOCKER_OPTS_FLAGS).replace(/ \(env [A-Z_]+\)/g, '');
}

/** `rudder docker-opts [-subnet-file=FILE] [-format=args|env]`. */
export async function dockerOpts(args: readonly string[], defaultSubnetFile: string, io: Out): Promise<number> {
  let p: ReturnType<typeof parseFlags>;
  try {
    p = parseFlags(DOCKER_OPTS_FLAGS, args, {});
  } catch (e) {
    io.err(`rudder docker-opts: ${(e as Error).message}`);
    io.err('');
    io.err(dockerOptsUsage());
    return 2;
  }
  if (p.values.get('help') === true) {
    io.out(dockerOptsUsage());
    return 0;
  }
  if (p.rest.length > 0) throw new RudderError('E_FLAG', `docker-opts: unexpected argument ${JSON.stringify(p.rest[0])}: expected only -subnet-file=FILE and -format=args|env`);
  const format = p.values.get('format') as string;
  if (format !== 'args' && format !== 'env') throw new RudderError('E_FLAG', `docker-opts: -format=${JSON.stringify(format)}: expected "args" or "env"`);
  const file = (p.values.get('subnet-file') as string | undefined) || defaultSubnetFile;
  const f = await readSubnetFile(file);
  const opts = dockerOptionsOf(f).join(' ');
  io.out(format === 'env' ? `DOCKER_OPTS="${opts}"` : opts);
  return 0;
}
