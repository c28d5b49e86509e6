/**
 * The network config (etcd key `<prefix>/config`): parse, apply defaults,
 * validate. Pure: no I/O. Every rejection names the key, the value and what
 * was expected, so an operator can fix it from the log line alone.
 */
import { RudderError } from './errors';
import {
  Cidr,
  formatCidr,
  formatIp,
  isAligned,
  lastIp,
  parseCidr,
  parseIp,
  sizeOf,
  contains,
} from './ip/ipv4';
import { Cidr6, formatCidr6, formatIp6, isAligned6, lastIp6, parseCidr6, parseIp6, sizeOf6, contains6 } from './ip/ipv6';

export const BACKEND_TYPES = ['udp', 'vxlan', 'host-gw', 'wireguard'] as const;
/** udp: the port every host listens on unless -port or Backend.Port says otherwise. */
export const DEFAULT_UDP_PORT = 8285;
/** vxlan: Backend.VNI and Backend.Port unless given (flannel's defaults). */
export const DEFAULT_VXLAN_VNI = 1;
export const DEFAULT_VXLAN_PORT = 8472;
/** wireguard: Backend.ListenPort unless given (WireGuard's usual port, flannel's default). */
export const DEFAULT_WIREGUARD_PORT = 51820;
export type BackendType = (typeof BACKEND_TYPES)[number];

export interface BackendConfig {
  readonly Type: BackendType;
  /** udp: UDP port (default 8285); vxlan: VXLAN UDP port (default 8472). */
  readonly Port?: number;
  /** vxlan only (default 1). */
  readonly VNI?: number;
  /** wireguard only: UDP port every host listens on and publishes (default 51820). */
  readonly ListenPort?: number;
  /** wireguard only: a preshared key for every peer, base64 of 32 bytes. */
  readonly PSK?: string;
  /** wireguard only: seconds between keepalives to each peer, 0 = off (default). */
  readonly PersistentKeepaliveInterval?: number;
  /** wireguard only: the TUN's MTU (default: underlay MTU − 80). */
  readonly MTU?: number;
  readonly [k: string]: unknown;
}

/** The IPv6 half of a config (EnableIPv6): the same rules as IPv4's, 128 bits wide. */
export interface Ipv6NetworkConfig {
  readonly network: Cidr6;
  readonly subnetLen: number;
  /** First allowed subnet's network address. */
  readonly subnetMin: bigint;
  /** Last allowed subnet's network address. */
  readonly subnetMax: bigint;
}

/** IPv6SubnetLen unless given (flannel's default), and its upper bound. */
export const DEFAULT_IPV6_SUBNET_LEN = 64;
export const MAX_IPV6_SUBNET_LEN = 124;

/**
 * The validated config. `network`, `subnetLen`, `subnetMin` and `subnetMax`
 * are IPv4's; with `enableIPv4: false` (IPv6-only) they hold flannel's empty
 * placeholder 0.0.0.0/0 and mean nothing: check `ipv4Enabled()` first.
 * `enableIPv4` is absent when true and `ipv6` absent when EnableIPv6 is off,
 * so an IPv4-only config is the same object it always was.
 */
export interface NetworkConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  /** First allowed subnet's network address. */
  readonly subnetMin: number;
  /** Last allowed subnet's network address. */
  readonly subnetMax: number;
  readonly backend: BackendConfig;
  /** false: IPv6-only (EnableIPv4 false); absent: IPv4 on. */
  readonly enableIPv4?: false;
  /** Present exactly when EnableIPv6 is true. */
  readonly ipv6?: Ipv6NetworkConfig;
}

/** Whether the config carries IPv4 (EnableIPv4, default true). */
export function ipv4Enabled(c: NetworkConfig): boolean {
  return c.enableIPv4 !== false;
}

const KNOWN_KEYS = new Set([
  'Network',
  'SubnetLen',
  'SubnetMin',
  'SubnetMax',
  'Backend',
  'EnableIPv4',
  'EnableIPv6',
  'IPv6Network',
  'IPv6SubnetLen',
  'IPv6SubnetMin',
  'IPv6SubnetMax',
]);

function bad(key: string, value: unknown, expected: string): RudderError {
  return new RudderError('E_CONFIG', `config: ${key}=${JSON.stringify(value)}: expected ${expected}`);
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

/** Parses JSON text into a validated config; throws RudderError(E_CONFIG). */
export function parseConfig(text: string): NetworkConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    // Show what was found (shortened): the operator may be looking at the wrong key or a truncated write.
    const found = text.length > 80 ? `${text.slice(0, 77)}...` : text;
    throw new RudderError('E_CONFIG', `config: not valid JSON (${(e as Error).message}): ${JSON.stringify(found)}: expected an object like {"Network":"10.0.0.0/16"}`, { cause: e });
  }
  return validateConfig(raw);
}

/** Applies defaults and checks every rule of the network config (README, "Network config"). */
export function validateConfig(raw: unknown): NetworkConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw bad('config', raw, 'a JSON object like {"Network":"10.0.0.0/16"}');
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!KNOWN_KEYS.has(k)) {
      throw bad(k, o[k], `one of the keys Network, SubnetLen, SubnetMin, SubnetMax, Backend, EnableIPv4, EnableIPv6, IPv6Network, IPv6SubnetLen, IPv6SubnetMin, IPv6SubnetMax (key names are case-sensitive)`);
    }
  }
  for (const k of ['EnableIPv4', 'EnableIPv6'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw bad(k, o[k], 'true or false');
  }
  const v4 = o.EnableIPv4 !== false;
  const v6 = o.EnableIPv6 === true;
  if (!v4 && !v6) throw bad('EnableIPv4', false, 'true unless EnableIPv6 is true (at least one address family must be on)');
  // As flannel: the keys of a family that is off are ignored, so one net-conf.json can flip a family on and off.
  if (!v4) {
    const ipv6 = validateIpv6(o);
    return { network: { ip: 0, prefix: 0 }, subnetLen: 0, subnetMin: 0, subnetMax: 0, backend: parseBackend(o.Backend), enableIPv4: false, ipv6 };
  }
  const c = validateIpv4(o);
  const backend = parseBackend(o.Backend);
  return v6 ? { ...c, backend, ipv6: validateIpv6(o) } : { ...c, backend };
}

function validateIpv4(o: Record<string, unknown>): Omit<NetworkConfig, 'backend'> {
  if (o.Network === undefined) throw bad('Network', undefined, 'an IPv4 CIDR such as "10.0.0.0/16" (Network is mandatory)');
  if (typeof o.Network !== 'string') throw bad('Network', o.Network, 'an IPv4 CIDR string such as "10.0.0.0/16"');
  const network = parseCidr(o.Network);
  if (!network) throw bad('Network', o.Network, 'an IPv4 CIDR such as "10.0.0.0/16"');
  // Subnets are at most /30, so a /30 Network has no room for two of them.
  if (network.prefix > 29) throw bad('Network', o.Network, 'a prefix length of at most /29 (room for at least two subnets of at most /30)');
  if (parseCidr(o.Network, true) === null) {
    throw bad('Network', o.Network, `a network address with no host bits set (${formatCidr(network)})`);
  }

  let subnetLen: number;
  if (o.SubnetLen === undefined) {
    subnetLen = network.prefix < 24 ? 24 : network.prefix + 1;
  } else {
    if (!isInt(o.SubnetLen)) throw bad('SubnetLen', o.SubnetLen, 'an integer prefix length');
    subnetLen = o.SubnetLen;
  }
  if (subnetLen <= network.prefix || subnetLen > 30) {
    throw bad('SubnetLen', subnetLen, `an integer larger than the Network prefix (${network.prefix}) and at most 30`);
  }

  const first = network.ip;
  const last = (lastIp(network) - sizeOf(subnetLen) + 1) >>> 0;
  const bound = (key: 'SubnetMin' | 'SubnetMax', dflt: number): number => {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'string') throw bad(key, v, `an IPv4 address string of a /${subnetLen} subnet inside ${formatCidr(network)}`);
    const ip = parseIp(v);
    if (ip === null) throw bad(key, v, `an IPv4 address such as "${formatIp(dflt)}"`);
    if (!contains(network, ip)) throw bad(key, v, `an address inside Network ${formatCidr(network)}`);
    if (!isAligned(ip, subnetLen)) throw bad(key, v, `the network address of a /${subnetLen} subnet (aligned to ${sizeOf(subnetLen)} addresses)`);
    return ip;
  };
  const subnetMin = bound('SubnetMin', first);
  const subnetMax = bound('SubnetMax', last);
  if (subnetMin > subnetMax) {
    throw bad('SubnetMin', formatIp(subnetMin), `an address not above SubnetMax (${formatIp(subnetMax)})`);
  }

  return { network, subnetLen, subnetMin, subnetMax };
}

/** The IPv6 keys (EnableIPv6): IPv6Network mandatory, IPv6SubnetLen 64 unless given, Min/Max as IPv4's. */
function validateIpv6(o: Record<string, unknown>): Ipv6NetworkConfig {
  const example = '"fd42:42::/48"';
  if (o.IPv6Network === undefined) throw bad('IPv6Network', undefined, `an IPv6 CIDR such as ${example} (IPv6Network is mandatory when EnableIPv6 is true)`);
  if (typeof o.IPv6Network !== 'string') throw bad('IPv6Network', o.IPv6Network, `an IPv6 CIDR string such as ${example}`);
  const network = parseCidr6(o.IPv6Network);
  if (!network) throw bad('IPv6Network', o.IPv6Network, `an IPv6 CIDR such as ${example}`);
  if (network.prefix > MAX_IPV6_SUBNET_LEN - 1) {
    throw bad('IPv6Network', o.IPv6Network, `a prefix length of at most /${MAX_IPV6_SUBNET_LEN - 1} (room for at least two subnets of at most /${MAX_IPV6_SUBNET_LEN})`);
  }
  if (parseCidr6(o.IPv6Network, true) === null) {
    throw bad('IPv6Network', o.IPv6Network, `a network address with no host bits set (${formatCidr6(network)})`);
  }
  let subnetLen = DEFAULT_IPV6_SUBNET_LEN;
  if (o.IPv6SubnetLen !== undefined) {
    if (!isInt(o.IPv6SubnetLen)) throw bad('IPv6SubnetLen', o.IPv6SubnetLen, 'an integer prefix length');
    subnetLen = o.IPv6SubnetLen;
  }
  if (subnetLen <= network.prefix || subnetLen > MAX_IPV6_SUBNET_LEN) {
    const why = o.IPv6SubnetLen === undefined ? ` (the default ${DEFAULT_IPV6_SUBNET_LEN} does not fit: set IPv6SubnetLen)` : '';
    throw bad('IPv6SubnetLen', subnetLen, `an integer larger than the IPv6Network prefix (${network.prefix}) and at most ${MAX_IPV6_SUBNET_LEN}${why}`);
  }
  const first = network.ip;
  const last = lastIp6(network) - sizeOf6(subnetLen) + 1n;
  const bound = (key: 'IPv6SubnetMin' | 'IPv6SubnetMax', dflt: bigint): bigint => {
    const v = o[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'string') throw bad(key, v, `an IPv6 address string of a /${subnetLen} subnet inside ${formatCidr6(network)}`);
    const ip = parseIp6(v);
    if (ip === null) throw bad(key, v, `an IPv6 address such as "${formatIp6(dflt)}"`);
    if (!contains6(network, ip)) throw bad(key, v, `an address inside IPv6Network ${formatCidr6(network)}`);
    if (!isAligned6(ip, subnetLen)) throw bad(key, v, `the network address of a /${subnetLen} subnet (host bits zero)`);
    return ip;
  };
  const subnetMin = bound('IPv6SubnetMin', first);
  const subnetMax = bound('IPv6SubnetMax', last);
  if (subnetMin > subnetMax) {
    throw bad('IPv6SubnetMin', formatIp6(subnetMin), `an address not above IPv6SubnetMax (${formatIp6(subnetMax)})`);
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

function parseBackend(v: unknown): BackendConfig {
  if (v === undefined) return { Type: 'udp' };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw bad('Backend', v, 'an object such as {"Type":"udp"}');
  }
  const b = v as Record<string, unknown>;
  const type = b.Type === undefined ? 'udp' : b.Type;
  if (typeof type !== 'string' || !(BACKEND_TYPES as readonly string[]).includes(type)) {
    throw bad('Backend.Type', type, `one of ${BACKEND_TYPES.map((t) => `"${t}"`).join(', ')}`);
  }
  if (b.Port !== undefined && (!isInt(b.Port) || b.Port < 1 || b.Port > 65535)) {
    throw bad('Backend.Port', b.Port, 'an integer UDP port between 1 and 65535');
  }
  if (b.VNI !== undefined) {
    if (type !== 'vxlan') throw bad('Backend.VNI', b.VNI, 'no VNI unless Backend.Type is "vxlan"');
    if (!isInt(b.VNI) || b.VNI < 0 || b.VNI > 0xffffff) throw bad('Backend.VNI', b.VNI, 'an integer between 0 and 16777215');
  }
  if (type === 'wireguard') return { ...b, Type: type, ...parseWireGuard(b) };
  // udp's Port stays unset here: the -port flag, when given, must win over it.
  if (type === 'vxlan') return { ...b, Type: type, VNI: b.VNI ?? DEFAULT_VXLAN_VNI, Port: b.Port ?? DEFAULT_VXLAN_PORT };
  return { ...b, Type: type as BackendType };
}

/** Whether `s` is the canonical base64 of exactly `n` bytes (padding included, as `wg genpsk` prints it). */
export function isBase64Of(s: string, n: number): boolean {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return false;
  const b = Buffer.from(s, 'base64');
  return b.length === n && b.toString('base64') === s;
}

/** The wireguard keys of Backend, with defaults (flannel's names). */
function parseWireGuard(b: Record<string, unknown>): { ListenPort: number; PersistentKeepaliveInterval: number } {
  if (b.ListenPort !== undefined && (!isInt(b.ListenPort) || b.ListenPort < 1 || b.ListenPort > 65535)) {
    throw bad('Backend.ListenPort', b.ListenPort, 'an integer UDP port between 1 and 65535');
  }
  // Never echo a key: say what is wrong with it instead.
  if (b.PSK !== undefined && (typeof b.PSK !== 'string' || !isBase64Of(b.PSK, 32))) {
    const what = typeof b.PSK === 'string' ? `a string of ${b.PSK.length} characters` : typeof b.PSK;
    throw new RudderError('E_CONFIG', `config: Backend.PSK=<${what}>: expected the base64 of 32 bytes (44 characters, as \`wg genpsk\` prints)`);
  }
  const ka = b.PersistentKeepaliveInterval;
  if (ka !== undefined && (!isInt(ka) || ka < 0 || ka > 65535)) {
    throw bad('Backend.PersistentKeepaliveInterval', ka, 'an integer number of seconds between 0 (off) and 65535');
  }
  if (b.MTU !== undefined && (!isInt(b.MTU) || b.MTU < 68 || b.MTU > 65535)) {
    throw bad('Backend.MTU', b.MTU, 'an integer MTU between 68 and 65535 (default: the underlay MTU minus 80)');
  }
  return { ListenPort: b.ListenPort ?? DEFAULT_WIREGUARD_PORT, PersistentKeepaliveInterval: ka ?? 0 };
}

/** The JSON form of a config with its defaults spelled out (for `config get`/`check`). */
export function configToJson(c: NetworkConfig): Record<string, unknown> {
  const v4 = ipv4Enabled(c)
    ? { Network: formatCidr(c.network), SubnetLen: c.subnetLen, SubnetMin: formatIp(c.subnetMin), SubnetMax: formatIp(c.subnetMax) }
    : { EnableIPv4: false };
  const v6 = c.ipv6
    ? {
        EnableIPv6: true,
        IPv6Network: formatCidr6(c.ipv6.network),
        IPv6SubnetLen: c.ipv6.subnetLen,
        IPv6SubnetMin: formatIp6(c.ipv6.subnetMin),
        IPv6SubnetMax: formatIp6(c.ipv6.subnetMax),
      }
    : {};
  return { ...v4, ...v6, Backend: c.backend };
}
