/**
 * The daemon's command-line flags: its table, their cross-checks, and the
 * etcd flags the etcd subcommands share. The parser is util/flags.ts.
 *
 * Pure: no I/O, no process globals. Errors are RudderError('E_FLAG').
 */
import { isIPv6 } from 'node:net';
import { RudderError } from '../errors';
import { DEFAULT_UDP_PORT } from '../config';
import { parseIp } from '../ip/ipv4';
import { isGlobalIpv6Text } from '../ip/ipv6';
import { DEFAULT_ETCD_PREFIX } from '../subnet/registry';
import { DEFAULT_FLANNEL_SUBNET_FILE, DEFAULT_SUBNET_FILE } from '../subnet/file';
import { HOST_ID_RE } from '../subnet/registry';
import { flagErr, formatDuration, parseDuration, parseFlags, HELP_FLAG, type FlagSpec, type ParsedFlags } from '../util/flags';

// ------------------------------------------------------------- daemon flags

/** What the daemon and the etcd subcommands (`config get|set`, `leases`) need to reach etcd. */
export interface EtcdFlags {
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  etcdUsername?: string;
  etcdPassword?: string;
}

export interface DaemonFlags extends EtcdFlags {
  iface?: string;
  publicIp?: string;
  /** -public-ipv6: checked when EnableIPv6 is on (src/iface.ts). */
  publicIpv6?: string | undefined;
  /** Undefined unless given on the command line or in the environment, so Backend.Port can apply. */
  port?: number;
  subnetFile: string;
  /** wireguard backend: this host's private key file (created on first start). */
  wireguardKeyFile: string;
  // -- host identity and migration (issue 17): begin
  /** -flannel-subnet-file; undefined when set to "" (off). */
  flannelSubnetFile?: string;
  /** -host-id; absent unless given. */
  hostId?: string;
  // -- host identity and migration: end
  subnetLeaseRenewMarginMs: number;
  subnetLeaseTtlMs: number;
  ipMasq: boolean;
  metricsAddr?: string;
  /** Kubernetes mode: subnet and peers from Node objects, config from netConfigPath; no etcd. */
  kubeSubnetMgr: boolean;
  kubeconfigFile?: string;
  kubeApiUrl?: string;
  kubeAnnotationPrefix: string;
  netConfigPath: string;
  v: number;
  logJson: boolean;
  version: boolean;
  help: boolean;
}

const RENEW_MARGIN_DEFAULT_MIN = 60;
export const DEFAULT_KUBE_ANNOTATION_PREFIX = 'rudder.io';
export const DEFAULT_NET_CONFIG_PATH = '/etc/rudder/net-conf.json';
export const DEFAULT_WIREGUARD_KEY_FILE = '/var/lib/rudder/wireguard.key';

export const DAEMON_FLAGS: readonly FlagSpec[] = [
  { name: 'etcd-endpoint', aliases: ['etcd-endpoints'], kind: 'list', default: 'http://127.0.0.1:4001,http://127.0.0.1:2379', help: 'comma-separated etcd v3 endpoints, each http(s)://host:port' },
  { name: 'etcd-prefix', kind: 'string', default: DEFAULT_ETCD_PREFIX, help: 'etcd key prefix for the network config and the leases' },
  { name: 'etcd-cafile', kind: 'string', help: 'CA certificate file for TLS to etcd' },
  { name: 'etcd-certfile', kind: 'string', help: 'client certificate file for TLS to etcd (with -etcd-keyfile)' },
  { name: 'etcd-keyfile', kind: 'string', help: 'client key file for TLS to etcd (with -etcd-certfile)' },
  { name: 'etcd-username', kind: 'string', help: 'etcd user name' },
  { name: 'etcd-password', kind: 'string', secret: true, help: 'etcd password (prefer the environment variable to the command line)' },
  { name: 'iface', kind: 'string', help: 'IP or name of the interface for host-to-host traffic (default: the interface of the default route)' },
  { name: 'public-ip', kind: 'string', help: 'IPv4 address other hosts send to, when behind NAT (default: the IP of -iface)' },
  { name: 'public-ipv6', kind: 'string', help: 'IPv6 address other hosts send to, with EnableIPv6 (default: the global IPv6 of -iface)' },
  { name: 'port', kind: 'int', min: 1, max: 65535, default: String(DEFAULT_UDP_PORT), help: 'UDP port of the udp backend; wins over Backend.Port of the network config' },
  { name: 'subnet-file', kind: 'string', default: DEFAULT_SUBNET_FILE, help: 'where the subnet env file is written' },
  { name: 'wireguard-key-file', kind: 'string', default: DEFAULT_WIREGUARD_KEY_FILE, help: 'wireguard backend: this host\'s private key (root-only; created on first start, kept across restarts)' },
  // -- host identity and migration (issue 17): begin
  { name: 'flannel-subnet-file', kind: 'string', default: DEFAULT_FLANNEL_SUBNET_FILE, help: "flanneld's subnet file: its subnet is tried first when this host has no lease and no -subnet-file yet (migration in place); empty: off" },
  { name: 'host-id', kind: 'string', help: 'this host\'s identity in its lease (default: the file host-id beside -subnet-file, created from /etc/machine-id on first start)' },
  // -- host identity and migration: end
  // Integer minutes as in flannel; a duration ("30s") is accepted too so that
  // tests with short TTLs can set a margin below one minute.
  { name: 'subnet-lease-renew-margin', kind: 'string', default: String(RENEW_MARGIN_DEFAULT_MIN), help: 'renew the lease this many minutes (or this duration, e.g. "30s") before it expires; must be less than -subnet-lease-ttl (if not given and the TTL is 60m or less: half the TTL)' },
  { name: 'subnet-lease-ttl', kind: 'duration', default: '24h', min: 1000, help: 'lifetime of a lease, e.g. "24h" (short values for tests; whole seconds, at least 1s)' },
  { name: 'ip-masq', kind: 'bool', default: 'false', help: 'masquerade traffic leaving the overlay' },
  { name: 'metrics-addr', kind: 'string', help: 'IP:PORT serving /metrics (Prometheus), /healthz and /readyz (default: off)' },
  { name: 'kube-subnet-mgr', kind: 'bool', default: 'false', help: "Kubernetes mode: the subnet is this node's Node.spec.podCIDR, peers are the other Nodes, the config is -net-config-path; no etcd (node name from NODE_NAME, else the hostname)" },
  { name: 'kubeconfig-file', kind: 'string', help: 'kubeconfig for Kubernetes mode (default: the in-cluster service account)' },
  { name: 'kube-api-url', kind: 'string', help: 'Kubernetes API server URL (default: from the kubeconfig or KUBERNETES_SERVICE_HOST/PORT)' },
  { name: 'kube-annotation-prefix', kind: 'string', default: DEFAULT_KUBE_ANNOTATION_PREFIX, help: 'prefix of the Node annotations Rudder reads and writes ("flannel.alpha.coreos.com" to share a cluster with flannel nodes)' },
  { name: 'net-config-path', kind: 'string', default: DEFAULT_NET_CONFIG_PATH, help: 'Kubernetes mode: the network config file (the same JSON as the etcd config key)' },
  { name: 'v', kind: 'int', min: 0, max: 10, default: '0', help: 'log verbosity; 1 adds data-path messages' },
  { name: 'log-format', kind: 'string', default: 'text', help: 'log line format: text or json' },
  { name: 'version', kind: 'bool', env: false, help: 'print the version and exit' },
  HELP_FLAG,
];

/** The etcd flags, shared by the daemon and the etcd subcommands. */
export const ETCD_FLAG_NAMES: readonly string[] = ['etcd-endpoint', 'etcd-prefix', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password'];
export const ETCD_FLAGS: readonly FlagSpec[] = DAEMON_FLAGS.filter((s) => ETCD_FLAG_NAMES.includes(s.name));

/** The Kubernetes-mode flags `rudder leases` takes too (the table from the Nodes). */
export const KUBE_FLAG_NAMES: readonly string[] = ['kube-subnet-mgr', 'kubeconfig-file', 'kube-api-url', 'kube-annotation-prefix'];
export const KUBE_FLAGS: readonly FlagSpec[] = DAEMON_FLAGS.filter((s) => KUBE_FLAG_NAMES.includes(s.name));

function str(p: ParsedFlags, name: string): string | undefined {
  const v = p.values.get(name);
  return typeof v === 'string' ? v : undefined;
}

/** Optional string flags: empty means "not set" (`-metrics-addr=` turns metrics off). */
function optStr(p: ParsedFlags, name: string): string | undefined {
  const v = str(p, name);
  return v === undefined || v === '' ? undefined : v;
}

/** `-name="value": expected ...`, spelled as the user gave it (`--etcd-endpoints`, `RUDDER_PORT`). */
function badValue(p: ParsedFlags, name: string, value: string, expected: string): RudderError {
  const where = p.sources.get(name)?.where ?? `-${name}`;
  return flagErr(`${where}=${JSON.stringify(value)}: expected ${expected}`);
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

/** The etcd flags of a parse whose table holds ETCD_FLAGS, checked. */
export function etcdFlags(p: ParsedFlags): EtcdFlags {
  const endpoints = (p.values.get('etcd-endpoint') as string[] | undefined) ?? [];
  const etcdPrefix = (str(p, 'etcd-prefix') ?? '').replace(/\/+$/, '');
  const f: EtcdFlags = {
    etcdEndpoints: endpoints,
    etcdPrefix,
    etcdCafile: optStr(p, 'etcd-cafile'),
    etcdCertfile: optStr(p, 'etcd-certfile'),
    etcdKeyfile: optStr(p, 'etcd-keyfile'),
    etcdUsername: optStr(p, 'etcd-username'),
    etcdPassword: str(p, 'etcd-password'),
  };
  for (const e of endpoints) {
    if (!validEndpoint(e)) {
      throw badValue(p, 'etcd-endpoint', e, 'http://HOST:PORT or https://HOST:PORT, comma-separated (e.g. "http://127.0.0.1:2379")');
    }
  }
  if (!etcdPrefix.startsWith('/')) { // also catches "/" alone, stripped to ''
    throw badValue(p, 'etcd-prefix', str(p, 'etcd-prefix') ?? '', 'an etcd key prefix starting with "/", other than "/" alone (e.g. "/coreos.com/network")');
  }
  if ((f.etcdCertfile === undefined) !== (f.etcdKeyfile === undefined)) {
    const [has, lacks] = f.etcdCertfile !== undefined ? ['etcd-certfile', 'etcd-keyfile'] : ['etcd-keyfile', 'etcd-certfile'];
    throw badValue(p, has, str(p, has) ?? '', `to be given together with -${lacks} (a client certificate needs its key)`);
  }
  return f;
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
  const bad = (name: string, value: string, expected: string): RudderError => badValue(p, name, value, expected);

  const ttlMs = p.values.get('subnet-lease-ttl') as number;
  const marginRaw = str(p, 'subnet-lease-renew-margin') ?? String(RENEW_MARGIN_DEFAULT_MIN);
  const logFormat = str(p, 'log-format') ?? 'text';

  let marginMs: number;
  if (/^\d+$/.test(marginRaw)) marginMs = Number(marginRaw) * 60_000;
  else marginMs = parseDuration(marginRaw) ?? NaN;

  const flags: DaemonFlags = {
    etcdEndpoints: (p.values.get('etcd-endpoint') as string[] | undefined) ?? [],
    etcdPrefix: (str(p, 'etcd-prefix') ?? '').replace(/\/+$/, ''),
    etcdCafile: optStr(p, 'etcd-cafile'),
    etcdCertfile: optStr(p, 'etcd-certfile'),
    etcdKeyfile: optStr(p, 'etcd-keyfile'),
    etcdUsername: optStr(p, 'etcd-username'),
    etcdPassword: str(p, 'etcd-password'),
    iface: optStr(p, 'iface'),
    publicIp: optStr(p, 'public-ip'),
    ...(optStr(p, 'public-ipv6') !== undefined ? { publicIpv6: optStr(p, 'public-ipv6') } : {}),
    port: p.given.has('port') ? (p.values.get('port') as number) : undefined,
    subnetFile: str(p, 'subnet-file') ?? '',
    wireguardKeyFile: str(p, 'wireguard-key-file') ?? '',
    flannelSubnetFile: optStr(p, 'flannel-subnet-file'),
    ...(optStr(p, 'host-id') !== undefined ? { hostId: optStr(p, 'host-id') } : {}),
    subnetLeaseRenewMarginMs: marginMs,
    subnetLeaseTtlMs: ttlMs,
    ipMasq: p.values.get('ip-masq') === true,
    metricsAddr: optStr(p, 'metrics-addr'),
    kubeSubnetMgr: p.values.get('kube-subnet-mgr') === true,
    kubeconfigFile: optStr(p, 'kubeconfig-file'),
    kubeApiUrl: optStr(p, 'kube-api-url'),
    kubeAnnotationPrefix: str(p, 'kube-annotation-prefix') ?? DEFAULT_KUBE_ANNOTATION_PREFIX,
    netConfigPath: str(p, 'net-config-path') ?? DEFAULT_NET_CONFIG_PATH,
    v: p.values.get('v') as number,
    logJson: logFormat === 'json',
    version,
    help,
  };
  if (help || version) return { flags, rest: p.rest };

  etcdFlags(p);
  if (flags.iface !== undefined && !validIface(flags.iface)) {
    throw bad('iface', flags.iface, 'an IPv4 address or an interface name of at most 15 characters');
  }
  if (flags.publicIp !== undefined && !validPublicIp(flags.publicIp)) {
    throw bad('public-ip', flags.publicIp, 'a unicast IPv4 address such as "198.18.0.1"');
  }
  if (flags.publicIpv6 !== undefined && !isGlobalIpv6Text(flags.publicIpv6)) {
    throw bad('public-ipv6', flags.publicIpv6, 'a global unicast IPv6 address such as "2001:2::1"');
  }
  if (flags.subnetFile === '') {
    throw bad('subnet-file', '', `a file path such as ${JSON.stringify(DEFAULT_SUBNET_FILE)}`);
  }
  if (flags.wireguardKeyFile === '') {
    throw bad('wireguard-key-file', '', `a file path such as ${JSON.stringify(DEFAULT_WIREGUARD_KEY_FILE)}`);
  }
  if (flags.hostId !== undefined && !HOST_ID_RE.test(flags.hostId)) {
    throw bad('host-id', flags.hostId, "1 to 64 letters, digits, '.', '_' or '-'");
  }
  if (ttlMs % 1000 !== 0) {
    // etcd lease TTLs are whole seconds; rounding silently would lie.
    throw bad('subnet-lease-ttl', p.sources.get('subnet-lease-ttl')?.raw ?? formatDuration(ttlMs), 'a whole number of seconds such as "24h" or "90s"');
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
  if (flags.kubeApiUrl !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(flags.kubeApiUrl)) {
    throw bad('kube-api-url', flags.kubeApiUrl, 'http(s)://HOST:PORT such as "https://10.96.0.1:443"');
  }
  // DNS-subdomain-like, as Kubernetes requires of an annotation key's prefix.
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(flags.kubeAnnotationPrefix)) {
    throw bad('kube-annotation-prefix', flags.kubeAnnotationPrefix, 'a DNS subdomain such as "rudder.io" or "flannel.alpha.coreos.com"');
  }
  if (flags.netConfigPath === '') throw bad('net-config-path', '', `a file path such as ${JSON.stringify(DEFAULT_NET_CONFIG_PATH)}`);
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw bad('log-format', logFormat, '"text" or "json"');
  }
  return { flags, rest: p.rest };
}
