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

export interface NetworkConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  /** First allowed subnet's network address. */
  readonly subnetMin: number;
  /** Last allowed subnet's network address. */
  readonly subnetMax: number;
  readonly backend: BackendConfig;
}

const KNOWN_KEYS = new Set(['Network', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'Backend', 'EnableIPv4', 'EnableIPv6', 'IPv6Network']);

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
      throw bad(k, o[k], `one of the keys Network, SubnetLen, SubnetMin, SubnetMax, Backend (key names are case-sensitive)`);
    }
  }

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

  return { network, subnetLen, subnetMin, subnetMax, backend: parseBackend(o.Backend) };
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
  return {
    Network: formatCidr(c.network),
    SubnetLen: c.subnetLen,
    SubnetMin: formatIp(c.subnetMin),
    SubnetMax: formatIp(c.subnetMax),
    Backend: c.backend,
  };
}
