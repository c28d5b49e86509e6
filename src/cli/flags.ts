/**
 * Command-line flags: a generic, table-driven parser (Go- and GNU-style
 * spellings, environment fallback) and Rudder's daemon flag table.
 *
 * Pure: no I/O, no process globals. Errors are RudderError('E_FLAG') with a
 * one-line message that names the flag, the value and the expected form; the
 * caller prints "rudder: <message>" plus usage and exits with status 2.
 */
import { isIPv6 } from 'node:net';
import { RudderError } from '../errors';
import { parseIp } from '../ip/ipv4';

export type FlagKind = 'string' | 'int' | 'bool' | 'duration' | 'list';

export interface FlagSpec {
  /** Canonical name, without dashes: `etcd-prefix`. */
  name: string;
  aliases?: string[];
  kind: FlagKind;
  /** In the flag's own command-line syntax (`"24h"`, `"8285"`, `"a,b"`); parsed like a given value. */
  default?: string;
  help: string;
  /** Read `RUDDER_<NAME>` from the environment (default true). */
  env?: boolean;
  /** Never echo the value (errors, usage). */
  secret?: boolean;
  /** Bounds for int (the value) and duration (milliseconds). */
  min?: number;
  max?: number;
}

export type FlagValue = string | number | boolean | string[] | undefined;

export interface ParsedFlags {
  /** Every spec's canonical name → its value (command line, else environment, else default). */
  values: Map<string, FlagValue>;
  /** Canonical names set on the command line or in the environment (not by a default). */
  given: Set<string>;
  /** Arguments after the flags: the subcommand and its own arguments. */
  rest: string[];
}

const ENV_PREFIX = 'RUDDER_';

export function envName(flagName: string): string {
  return ENV_PREFIX + flagName.toUpperCase().replace(/-/g, '_');
}

function flagErr(message: string): RudderError {
  return new RudderError('E_FLAG', message);
}

// ---------------------------------------------------------------- durations

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign, what Go prints
  'μs': 1e-3, // U+03BC Greek mu, what people type
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
// Longest unit first so "ms" is not read as "m" followed by garbage.
const DURATION_PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * Go's time.ParseDuration syntax ("24h", "1h30m", "1.5s", "-2m"), in
 * milliseconds. Unlike Go, a bare number (even "0") is rejected: a unit-less
 * value is almost always someone expecting seconds or minutes.
 */
export function parseDuration(s: string): number | null {
  let i = 0;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    i = 1;
  }
  if (i >= s.length) return null;
  let total = 0;
  while (i < s.length) {
    DURATION_PART.lastIndex = i;
    const m = DURATION_PART.exec(s);
    if (!m) return null;
    const num = Number(m[1]);
    const unit = DURATION_UNITS_MS[m[2] as string];
    if (unit === undefined || !Number.isFinite(num)) return null;
    total += num * unit;
    i = DURATION_PART.lastIndex;
  }
  // Fractions of ms ("1.1s") pick up float noise; nanoseconds are the finest unit.
  const ms = Math.round(total * 1e6) / 1e6;
  if (!Number.isFinite(ms)) return null;
  return sign * ms === 0 ? 0 : sign * ms; // no -0
}

/** "90000" → "1m30s": for messages that echo a parsed duration. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.abs(ms);
  let out = ms < 0 ? '-' : '';
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  if (h) out += `${h}h`;
  if (m) out += `${m}m`;
  if (rest) out += rest >= 1000 ? `${rest / 1000}s` : `${rest}ms`;
  return out;
}

// ------------------------------------------------------------ value parsing

const TRUE = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

/** What a valid value looks like, for "expected ..." in messages. */
export function expectedForm(spec: FlagSpec): string {
  switch (spec.kind) {
    case 'int': {
      const { min, max } = spec;
      if (min !== undefined && max !== undefined) return `an integer between ${min} and ${max}`;
      if (min !== undefined) return `an integer of at least ${min}`;
      if (max !== undefined) return `an integer of at most ${max}`;
      return 'an integer';
    }
    case 'bool':
      return 'true or false (or 1 or 0)';
    case 'duration': {
      const base = 'a duration with a unit such as "24h", "1h30m", "90s" or "500ms"';
      const { min, max } = spec;
      if (min !== undefined && max !== undefined) return `${base}, between ${formatDuration(min)} and ${formatDuration(max)}`;
      if (min !== undefined) return `${base}, of at least ${formatDuration(min)}`;
      if (max !== undefined) return `${base}, of at most ${formatDuration(max)}`;
      return base;
    }
    case 'list':
      return 'a comma-separated list';
    case 'string':
      return 'a value';
  }
}

function shown(spec: FlagSpec, raw: string): string {
  return spec.secret ? '"(hidden)"' : JSON.stringify(raw);
}

/** `where` is how the user spelled the source: `-port` or `RUDDER_PORT`. */
function convert(spec: FlagSpec, raw: string, where: string): Exclude<FlagValue, undefined> {
  const wrong = (): RudderError => flagErr(`${where}=${shown(spec, raw)}: expected ${expectedForm(spec)}`);
  switch (spec.kind) {
    case 'string':
      return raw;
    case 'bool':
      if (TRUE.has(raw)) return true;
      if (FALSE.has(raw)) return false;
      throw wrong();
    case 'int': {
      if (!/^[+-]?\d+$/.test(raw)) throw wrong();
      const n = Number(raw);
      if (!Number.isSafeInteger(n)) throw wrong();
      if (spec.min !== undefined && n < spec.min) throw wrong();
      if (spec.max !== undefined && n > spec.max) throw wrong();
      return n;
    }
    case 'duration': {
      const ms = parseDuration(raw);
      if (ms === null) throw wrong();
      if (spec.min !== undefined && ms < spec.min) throw wrong();
      if (spec.max !== undefined && ms > spec.max) throw wrong();
      return ms;
    }
    case 'list': {
      const items = raw.split(',').map((x) => x.trim()).filter((x) => x !== '');
      if (items.length === 0) throw wrong();
      return items;
    }
  }
}

// ------------------------------------------------------------------ parsing

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const del = (prev[j] ?? 0) + 1;
      const ins = (cur[j - 1] ?? 0) + 1;
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(del, ins, sub));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function closest(name: string, specs: readonly FlagSpec[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const s of specs) {
    for (const n of [s.name, ...(s.aliases ?? [])]) {
      // A known name that starts with what was typed (`-etcd-end`) is the
      // likeliest intent, whatever the edit distance says.
      const score = n.startsWith(name) || name.startsWith(n) ? Math.abs(n.length - name.length) * 0.1 : levenshtein(name, n);
      if (score < bestScore) {
        bestScore = score;
        best = n;
      }
    }
  }
  return best;
}

function buildIndex(specs: readonly FlagSpec[]): Map<string, FlagSpec> {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    for (const n of [s.name, ...(s.aliases ?? [])]) {
      // A duplicate is a programming error in a table, not a user error.
      if (byName.has(n)) throw new RudderError('E_INTERNAL', `flag table: -${n} defined twice`);
      byName.set(n, s);
    }
  }
  return byName;
}

/**
 * Parses flags until the first non-flag argument (Go semantics), `--`, or
 * the end. Values come from the command line, else `RUDDER_<NAME>` (empty
 * counts as unset, so `RUDDER_PUBLIC_IP=` in a unit file is harmless), else
 * the spec's default. A list flag repeated on the command line accumulates.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParsedFlags {
  const byName = buildIndex(specs);
  const values = new Map<string, FlagValue>();
  const given = new Set<string>();
  const fromCli = new Set<string>();

  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg.length < 2 || !arg.startsWith('-')) break; // "-" alone is an operand, as in Go
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    const dashes = arg.startsWith('--') ? '--' : '-';
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === '' || name.startsWith('-')) {
      throw flagErr(`bad flag syntax: ${JSON.stringify(arg)}: expected -name, -name=value or -name value`);
    }
    const spec = byName.get(name);
    const where = dashes + name;
    if (!spec) {
      const hint = closest(name, specs);
      throw flagErr(`unknown flag ${where}${hint === undefined ? '' : ` (did you mean -${hint}?)`}`);
    }

    let raw: string;
    if (eq >= 0) {
      raw = body.slice(eq + 1);
    } else if (spec.kind === 'bool') {
      // Go semantics: a bare boolean never consumes the next argument, so
      // `-ip-masq config get` still sees the subcommand.
      raw = 'true';
    } else {
      const next = argv[i + 1];
      if (next === undefined) {
        throw flagErr(`${where}: missing value: expected ${expectedForm(spec)}`);
      }
      if (next.startsWith('-') && next.length > 1 && isKnownFlag(next, byName)) {
        // Almost always a forgotten value, not a value that looks like a flag.
        throw flagErr(`${where}: missing value (next argument ${JSON.stringify(next)} is a flag): expected ${expectedForm(spec)}; write ${where}=VALUE for a value starting with "-"`);
      }
      raw = next;
      i++;
    }

    const v = convert(spec, raw, where);
    const prev = values.get(spec.name);
    if (spec.kind === 'list' && fromCli.has(spec.name) && Array.isArray(prev) && Array.isArray(v)) {
      values.set(spec.name, [...prev, ...v]);
    } else {
      values.set(spec.name, v);
    }
    fromCli.add(spec.name);
    given.add(spec.name);
  }
  const rest = argv.slice(i);

  for (const spec of specs) {
    if (fromCli.has(spec.name)) continue;
    if (spec.env !== false) {
      // The canonical name's variable wins over an alias's.
      for (const n of [spec.name, ...(spec.aliases ?? [])]) {
        const ev = envName(n);
        const raw = env[ev];
        if (raw === undefined || raw === '') continue;
        values.set(spec.name, convert(spec, raw, ev));
        given.add(spec.name);
        break;
      }
      if (given.has(spec.name)) continue;
    }
    if (spec.default !== undefined) {
      values.set(spec.name, convert(spec, spec.default, `-${spec.name} (default)`));
    } else if (spec.kind === 'bool') {
      values.set(spec.name, false);
    } else {
      values.set(spec.name, undefined);
    }
  }
  return { values, given, rest };
}

function isKnownFlag(arg: string, byName: ReadonlyMap<string, FlagSpec>): boolean {
  const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
  const eq = body.indexOf('=');
  return byName.has(eq < 0 ? body : body.slice(0, eq));
}

// -------------------------------------------------------------------- usage

function metavar(kind: FlagKind): string {
  switch (kind) {
    case 'string':
      return 'STRING';
    case 'int':
      return 'INT';
    case 'bool':
      return '';
    case 'duration':
      return 'DURATION';
    case 'list':
      return 'LIST';
  }
}

/** Go-style usage: one entry per flag with its aliases, default and variable. */
export function formatUsage(title: string, specs: readonly FlagSpec[]): string {
  const lines = [title, '', 'Flags:'];
  for (const s of specs) {
    const names = [s.name, ...(s.aliases ?? [])].map((n) => `-${n}`).join(', ');
    const mv = metavar(s.kind);
    lines.push(`  ${names}${mv ? ` ${mv}` : ''}`);
    const extra: string[] = [];
    if (s.default !== undefined && !s.secret) extra.push(`default ${JSON.stringify(s.default)}`);
    if (s.env !== false) extra.push(`env ${envName(s.name)}`);
    lines.push(`        ${s.help}${extra.length ? ` (${extra.join('; ')})` : ''}`);
  }
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------- daemon flags

export interface DaemonFlags {
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
  iface?: string;
  publicIp?: string;
  /** Undefined unless given on the command line or in the environment, so Backend.Port can apply. */
  port?: number;
  subnetFile: string;
  subnetLeaseRenewMarginMs: number;
  subnetLeaseTtlMs: number;
  ipMasq: boolean;
  metricsAddr?: string;
  v: number;
  logJson: boolean;
  version: boolean;
  help: boolean;
}

export const DEFAULT_UDP_PORT = 8285;
const RENEW_MARGIN_DEFAULT_MIN = 60;

export const DAEMON_FLAGS: readonly FlagSpec[] = [
  { name: 'etcd-endpoint', aliases: ['etcd-endpoints'], kind: 'list', default: 'http://127.0.0.1:4001,http://127.0.0.1:2379', help: 'comma-separated etcd v3 endpoints, each http(s)://host:port' },
  { name: 'etcd-prefix', kind: 'string', default: '/coreos.com/network', help: 'etcd key prefix for the network config and the leases' },
  { name: 'etcd-cafile', kind: 'string', help: 'CA certificate file for TLS to etcd' },
  { name: 'etcd-certfile', kind: 'string', help: 'client certificate file for TLS to etcd (with -etcd-keyfile)' },
  { name: 'etcd-keyfile', kind: 'string', help: 'client key file for TLS to etcd (with -etcd-certfile)' },
  { name: 'etcd-username', kind: 'string', help: 'etcd user name' },
  { name: 'etcd-password', kind: 'string', secret: true, help: 'etcd password (prefer the environment variable to the command line)' },
  { name: 'iface', kind: 'string', help: 'IP or name of the interface for host-to-host traffic (default: the interface of the default route)' },
  { name: 'public-ip', kind: 'string', help: 'IPv4 address other hosts send to, when behind NAT (default: the IP of -iface)' },
  { name: 'port', kind: 'int', min: 1, max: 65535, default: String(DEFAULT_UDP_PORT), help: 'UDP port of the udp backend; wins over Backend.Port of the network config' },
  { name: 'subnet-file', kind: 'string', default: '/run/rudder/subnet.env', help: 'where the subnet env file is written' },
  // Integer minutes as in flannel; a duration ("30s") is accepted too so that
  // tests with short TTLs can set a margin below one minute.
  { name: 'subnet-lease-renew-margin', kind: 'string', default: String(RENEW_MARGIN_DEFAULT_MIN), help: 'renew the lease this many minutes (or this duration, e.g. "30s") before it expires; must be less than -subnet-lease-ttl (if not given and the TTL is 60m or less: half the TTL)' },
  { name: 'subnet-lease-ttl', kind: 'duration', default: '24h', min: 1000, help: 'lifetime of a lease, e.g. "24h" (short values for tests; whole seconds, at least 1s)' },
  { name: 'ip-masq', kind: 'bool', default: 'false', help: 'masquerade traffic leaving the overlay' },
  { name: 'metrics-addr', kind: 'string', help: 'IP:PORT serving /metrics (Prometheus), /healthz and /readyz (default: off)' },
  { name: 'v', kind: 'int', min: 0, max: 10, default: '0', help: 'log verbosity; 1 adds data-path messages' },
  { name: 'log-format', kind: 'string', default: 'text', help: 'log line format: text or json' },
  { name: 'version', kind: 'bool', env: false, help: 'print the version and exit' },
  { name: 'help', aliases: ['h'], kind: 'bool', env: false, help: 'print this help and exit' },
];

const SUBCOMMANDS: ReadonlyArray<readonly [string, string]> = [
  ['config check FILE', 'validate a network config file offline and print it with its defaults'],
  ['config get', 'print the network config stored in etcd'],
  ['config set JSON|FILE [--if-absent]', 'validate and store the network config in etcd (--if-absent: only if none is stored yet)'],
  ['leases', 'list the subnet leases in etcd'],
  ['sandbox [--hosts N] [--backend B] [--check]', 'a whole cluster on this machine in network namespaces (root; see rudder sandbox -help)'],
  ['docker-opts [-subnet-file=FILE] [-format=args|env]', 'print dockerd options (--bip, --mtu) for this host\'s subnet file'],
  ['cni-config [-out DIR] [-watch] [-subnet-file=FILE]', 'write a CNI conflist (bridge, host-local, portmap) for this host\'s subnet; -watch keeps it current'],
  ['version', 'print the version'],
];

export function daemonUsage(): string {
  const width = Math.max(...SUBCOMMANDS.map(([c]) => c.length));
  const cmds = SUBCOMMANDS.map(([c, h]) => `  ${c.padEnd(width)}  ${h}`);
  return (
    formatUsage('Usage: rudder [flags] [command]\n\nWithout a command, runs the daemon. Flags also come from RUDDER_<NAME> environment variables\n(e.g. RUDDER_ETCD_PREFIX); the command line wins.', DAEMON_FLAGS) +
    ['', 'Commands:', ...cmds, ''].join('\n')
  );
}

function str(p: ParsedFlags, name: string): string | undefined {
  const v = p.values.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** Optional string flags: empty means "not set" (`-metrics-addr=` turns metrics off). */
function optStr(p: ParsedFlags, name: string): string | undefined {
  const v = str(p, name);
  return v === undefined || v === '' ? undefined : v;
}

/**
 * How the user spelled a given flag's source (`--port`, `RUDDER_PORT`) and
 * the raw text there, for messages about its value; null if not given.
 */
function sourceOf(
  p: ParsedFlags,
  name: string,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { where: string; raw: string } | null {
  if (!p.given.has(name)) return null;
  const consumed = argv.slice(0, argv.length - p.rest.length);
  const spec = DAEMON_FLAGS.find((s) => s.name === name);
  const names = [name, ...(spec?.aliases ?? [])];
  for (let i = consumed.length - 1; i >= 0; i--) {
    const m = /^(--?)([^=]+)(=(.*))?$/s.exec(consumed[i] as string);
    if (m && names.includes(m[2] as string)) {
      return { where: `${m[1]}${m[2]}`, raw: m[3] !== undefined ? (m[4] as string) : (consumed[i + 1] ?? '') };
    }
  }
  for (const n of names) {
    const v = env[envName(n)];
    if (v !== undefined && v !== '') return { where: envName(n), raw: v };
  }
  return null;
}

const ENDPOINT = /^(https?):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})\/?$/;

function validPort(s: string): boolean {
  const n = Number(s);
  return /^\d{1,5}$/.test(s) && n >= 1 && n <= 65535;
}

function validEndpoint(u: string): boolean {
  const m = ENDPOINT.exec(u);
  if (!m) return false;
  const host = m[2] as string;
  if (host.startsWith('[') && !isIPv6(host.slice(1, -1))) return false;
  // All-digit-and-dot hosts are meant as IPv4: hold them to it.
  if (/^[\d.]+$/.test(host) && parseIp(host) === null) return false;
  return validPort(m[3] as string);
}

function validHostPort(s: string): boolean {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (v6) return isIPv6(v6[1] as string) && validPort(v6[2] as string);
  const colon = s.lastIndexOf(':');
  if (colon < 0) return false;
  return parseIp(s.slice(0, colon)) !== null && s.slice(0, colon).trim() === s.slice(0, colon) && validPort(s.slice(colon + 1));
}

function validPublicIp(s: string): boolean {
  const ip = s.trim() === s ? parseIp(s) : null;
  if (ip === null) return false;
  // Other hosts cannot send to these.
  return ip !== 0 && ip !== 0xffffffff && ip >>> 28 !== 0xe;
}

function validIface(s: string): boolean {
  if (/^[\d.]+$/.test(s)) return parseIp(s) !== null;
  // Linux: at most IFNAMSIZ-1 bytes, no '/' and no whitespace.
  return Buffer.byteLength(s) <= 15 && !/[\s/]/.test(s);
}

/**
 * Parses and validates the daemon's flags. With -help or -version the
 * cross-checks are skipped: the user asked for help, not for a lecture.
 */
export function daemonFlags(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { flags: DaemonFlags; rest: string[] } {
  const p = parseFlags(DAEMON_FLAGS, argv, env);
  const help = p.values.get('help') === true;
  const version = p.values.get('version') === true;
  // `value` is what to show when the flag was not given (a default failed a cross-check).
  const bad = (name: string, value: string, expected: string): RudderError => {
    const src = sourceOf(p, name, argv, env);
    const where = src?.where ?? `-${name}`;
    return flagErr(`${where}=${JSON.stringify(value)}: expected ${expected}`);
  };
  const rawOf = (name: string, fallback: string): string => sourceOf(p, name, argv, env)?.raw ?? fallback;

  const endpoints = (p.values.get('etcd-endpoint') as string[] | undefined) ?? [];
  const ttlMs = p.values.get('subnet-lease-ttl') as number;
  const marginRaw = str(p, 'subnet-lease-renew-margin') ?? String(RENEW_MARGIN_DEFAULT_MIN);
  const etcdPrefix = (str(p, 'etcd-prefix') ?? '').replace(/\/+$/, '');
  const logFormat = str(p, 'log-format') ?? 'text';

  let marginMs: number;
  if (/^\d+$/.test(marginRaw)) marginMs = Number(marginRaw) * 60_000;
  else marginMs = parseDuration(marginRaw) ?? NaN;

  const flags: DaemonFlags = {
    etcdEndpoints: endpoints,
    etcdPrefix,
    etcdCafile: optStr(p, 'etcd-cafile'),
    etcdCertfile: optStr(p, 'etcd-certfile'),
    etcdKeyfile: optStr(p, 'etcd-keyfile'),
    etcdUsername: optStr(p, 'etcd-username'),
    etcdPassword: str(p, 'etcd-password'),
    iface: optStr(p, 'iface'),
    publicIp: optStr(p, 'public-ip'),
    port: p.given.has('port') ? (p.values.get('port') as number) : undefined,
    subnetFile: str(p, 'subnet-file') ?? '',
    subnetLeaseRenewMarginMs: marginMs,
    subnetLeaseTtlMs: ttlMs,
    ipMasq: p.values.get('ip-masq') === true,
    metricsAddr: optStr(p, 'metrics-addr'),
    v: p.values.get('v') as number,
    logJson: logFormat === 'json',
    version,
    help,
  };
  if (help || version) return { flags, rest: p.rest };

  for (const e of endpoints) {
    if (!validEndpoint(e)) {
      throw bad('etcd-endpoint', e, 'http://HOST:PORT or https://HOST:PORT, comma-separated (e.g. "http://127.0.0.1:2379")');
    }
  }
  if (!etcdPrefix.startsWith('/')) { // also catches "/" alone, stripped to ''
    throw bad('etcd-prefix', str(p, 'etcd-prefix') ?? '', 'an etcd key prefix starting with "/", other than "/" alone (e.g. "/coreos.com/network")');
  }
  if ((flags.etcdCertfile === undefined) !== (flags.etcdKeyfile === undefined)) {
    const [has, lacks] = flags.etcdCertfile !== undefined ? ['etcd-certfile', 'etcd-keyfile'] : ['etcd-keyfile', 'etcd-certfile'];
    throw bad(has, str(p, has) ?? '', `to be given together with -${lacks} (a client certificate needs its key)`);
  }
  if (flags.iface !== undefined && !validIface(flags.iface)) {
    throw bad('iface', flags.iface, 'an IPv4 address or an interface name of at most 15 characters');
  }
  if (flags.publicIp !== undefined && !validPublicIp(flags.publicIp)) {
    throw bad('public-ip', flags.publicIp, 'a unicast IPv4 address such as "198.18.0.1"');
  }
  if (flags.subnetFile === '') {
    throw bad('subnet-file', '', 'a file path such as "/run/rudder/subnet.env"');
  }
  if (ttlMs % 1000 !== 0) {
    // etcd lease TTLs are whole seconds; rounding silently would lie.
    throw bad('subnet-lease-ttl', rawOf('subnet-lease-ttl', formatDuration(ttlMs)), 'a whole number of seconds such as "24h" or "90s"');
  }
  if (!Number.isFinite(marginMs) || marginMs <= 0) {
    throw bad('subnet-lease-renew-margin', marginRaw, 'a positive number of minutes such as "60", or a duration such as "30s"');
  }
  if (marginMs >= ttlMs) {
    if (p.given.has('subnet-lease-renew-margin')) {
      throw bad('subnet-lease-renew-margin', marginRaw, `less than -subnet-lease-ttl (${formatDuration(ttlMs)}); a bare number is minutes`);
    }
    // Only the default is too long: a short TTL alone should just work.
    flags.subnetLeaseRenewMarginMs = ttlMs / 2;
  }
  if (flags.metricsAddr !== undefined && !validHostPort(flags.metricsAddr)) {
    throw bad('metrics-addr', flags.metricsAddr, 'IP:PORT such as "127.0.0.1:9100" (PORT between 1 and 65535)');
  }
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw bad('log-format', logFormat, '"text" or "json"');
  }
  return { flags, rest: p.rest };
}
