/**
 * The typed face of the native data plane (native/, N-API addon
 * rudder_native.node). JavaScript opens it, replaces its route table and
 * reads its counters; the addon's own threads move every packet.
 *
 * The addon is loaded lazily, on first use, so that importing this module
 * never fails on a machine where the addon was not built yet.
 */
import { ADDON_PATH, requireAddon } from './addon';
import { MAX_QUEUES } from './limits';
import { RudderError } from '../errors';
import type { DataPlane, DataPlaneCounters, DataPlaneOffloads, DataPlaneOptions, DataPlaneRoute, DataPlaneRoute6, UnderlayFamily } from './types';

export { ADDON_PATH, requireAddon };

/** Opaque handle owned by the addon (an N-API External). */
interface RawHandle {
  readonly __rudderDataPlaneHandle: never;
}

/**
 * Options exactly as native/addon/addon.c reads them (all integers, addresses
 * host order). Their ranges are checked here, once (toRawOptions); the addon
 * only checks their types.
 */
interface RawOpenOptions {
  tunName: string;
  bindAddress: number;
  port: number;
  localIp: number;
  localPrefix: number;
  icmpSource: number;
  /** The TUN MTU: IPv6 packets above it are answered packet-too-big. */
  mtu: number;
  /** This host's IPv6 subnet (16 bytes) and its prefix length; absent: no IPv6 subnet (prefix 0). */
  local6Net?: Buffer;
  local6Prefix: number;
  /** Source of ICMPv6 errors (16 bytes); absent: none are sent. */
  icmp6Source?: Buffer;
  offloads: boolean;
  busyPoll: boolean;
  queues: number;
  /** IPv6 sockets, and routes' and peers' IPv6 endpoints (DataPlaneOptions.underlay 'ipv6'). */
  ipv6Underlay: boolean;
  /** WireGuard mode; absent: plain udp mode. The key Buffers are wiped by the addon. */
  wireguard?: RawWireGuard;
}

interface RawWireGuard {
  privateKey: Buffer;
  psk?: Buffer;
  persistentKeepalive: number;
  tai64nFloor?: Buffer;
}

interface RawPeer {
  publicKey: Buffer;
  ip: number;
  /** The endpoint on an IPv6 underlay (16 bytes); absent on an IPv4 one. */
  ip6?: Buffer;
  port: number;
  /** Flat pairs: [net, prefix, ...]. */
  allowed: Uint32Array;
  /** IPv6: [net as four big-endian words, prefix, ...]. */
  allowed6: Uint32Array;
}

interface RawPeerStatus {
  publicKey: Buffer;
  ip: number;
  /** The endpoint on an IPv6 underlay (16 bytes, zero on an IPv4 one); absent from an older addon. */
  ip6?: Buffer;
  port: number;
  lastHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
  allowed: Uint32Array;
  /** [net as four big-endian words, prefix, ...]; absent from an older addon. */
  allowed6?: Uint32Array;
}

interface RawOpenResult {
  handle: RawHandle;
  /** 64-bit counters written by the data plane threads, laid out as `counterNames` (native/dataplane/counters.h). */
  counters: ArrayBuffer;
  /** Device name the kernel gave the TUN. */
  ifname: string;
  /** What the kernel granted (checked by isOffloads before use). */
  offloads: unknown;
  /** WireGuard only: which ChaCha20/Poly1305 calls seal and open (native/wireguard/crypto.h, wg_crypto_path). */
  cipher?: unknown;
}

/** The raw shape of rudder_native.node. */
interface RawAddon {
  readonly counterNames: readonly string[];
  open(opts: RawOpenOptions): RawOpenResult;
  /**
   * Flat groups [net, prefix, endpoint x4, port, ...]; IPv6: [net x4, prefix, endpoint x4, port, ...]. An
   * address is four big-endian words; an IPv4 endpoint is ::ffff:a.b.c.d (its last word the PublicIP).
   */
  setRoutes(handle: RawHandle, routes: Uint32Array, routes6: Uint32Array): void;
  setPeers(handle: RawHandle, peers: RawPeer[]): void;
  peers(handle: RawHandle): unknown;
  lastTai64n(handle: RawHandle): Buffer;
  setPrivateKey(handle: RawHandle, privateKey: Buffer): void;
  stop(handle: RawHandle): void;
}

/** Counters of this implementation: the contract's plus the offloads' and IPv6's. */
export interface NativeDataPlaneCounters extends DataPlaneCounters {
  /** Packets read from the TUN that are neither IPv4 nor IPv6 (version nibble), dropped. */
  dropNotIPv4: number;
  /** TCP super-packets read from the TUN and cut into segments (TSO), each counted in txPackets per segment. */
  txGsoPackets: number;
  /** Super-packets written to the TUN after coalescing received segments (GRO), counted in rxPackets per segment. */
  rxGroPackets: number;
  /** Of txPackets: IPv6 inner packets (per segment). */
  txIPv6Packets: number;
  /** IPv6 inner packets accepted from peers (of what becomes rxPackets). */
  rxIPv6Packets: number;
  /** IPv6 packets above the tunnel MTU, answered with ICMPv6 packet-too-big. */
  dropTooBig: number;
  /** IPv6 packets read from the TUN for a link-local or multicast destination (router solicitations, MLD): never carried. */
  dropLinkLocal: number;
  /** UDP GSO messages the kernel refused at send time (EIO without checksum offload, EINVAL above the MTU), resent datagram by datagram. */
  txGsoRefused: number;
  /** Packets moved by the other thread of their worker while it served this one's fd (a bulk flow's ACKs, busy polling). */
  servedPackets: number;
  /** Waits in which a busy data thread lingered (polled its fds, yielding the CPU) before sleeping. */
  lingers: number;
  /** Of `lingers`: those that found work, so the thread did not sleep. */
  lingerFound: number;
}

/** WireGuard mode's counters (native/dataplane/counters.h), on top of the plain ones. */
export interface WireGuardCounters extends NativeDataPlaneCounters {
  wgHandshakesSent: number;
  wgHandshakesReceived: number;
  wgHandshakesCompleted: number;
  wgCookiesSent: number;
  wgDropBadMac: number;
  wgDropReplay: number;
  wgDropUnknownIndex: number;
  wgDropCookieRequired: number;
  wgDropAllowedIps: number;
  wgDropNoKeypair: number;
  wgDropExpired: number;
}

/** How a data plane runs WireGuard (openWireGuardDataPlane). */
export interface WireGuardOptions {
  /** This host's X25519 private key, 32 bytes (copied and the copy wiped; the caller wipes its own). */
  readonly privateKey: Buffer;
  /** A preshared key for every peer, 32 bytes. */
  readonly psk?: Buffer;
  /** Seconds between keepalives to each peer, 0 (default) = off; 1..65535. */
  readonly persistentKeepalive?: number;
  /** The last TAI64N this host sent (12 bytes, from lastTai64n() of an earlier run): initiations never go below it. */
  readonly tai64nFloor?: Buffer;
}

/** A subnet, address in host order. */
export interface WireGuardPrefix {
  readonly ip: number;
  readonly prefix: number;
}

export interface WireGuardPeer {
  /** The peer's X25519 public key, 32 bytes. */
  readonly publicKey: Buffer;
  /**
   * Pinned endpoint (PublicIP and Port of its lease, host order): no roaming.
   * On an IPv6 underlay `ip6` (its PublicIPv6) is the address and `ip` is unused (0).
   */
  readonly endpoint: WireGuardEndpoint;
  /** Its lease subnets: packets to them go to this peer, and from this peer only their sources are taken. */
  readonly allowedIps: readonly WireGuardPrefix[];
  /** Its IPv6 lease subnets, the same way. */
  readonly allowedIps6?: readonly WireGuardPrefix6[];
}

/** A peer's endpoint: `ip` on an IPv4 underlay, `ip6` on an IPv6 one. */
export interface WireGuardEndpoint {
  readonly ip: number;
  readonly ip6?: bigint;
  readonly port: number;
}

/** An IPv6 subnet (128-bit address as a bigint). */
export interface WireGuardPrefix6 {
  readonly ip: bigint;
  readonly prefix: number;
}

export interface WireGuardPeerStatus {
  readonly publicKey: Buffer;
  readonly endpoint: WireGuardEndpoint;
  readonly allowedIps: readonly WireGuardPrefix[];
  /** Its IPv6 allowed IPs (absent: none). */
  readonly allowedIps6?: readonly WireGuardPrefix6[];
  /** Wall-clock ms of the latest completed handshake, 0 = none yet. */
  readonly latestHandshakeMs: number;
  /** Transport messages' bytes on the wire, received and sent. */
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface WireGuardDataPlane extends NativeDataPlane {
  /** Replaces the peer set (and so the routes) at once; a kept peer (same key and endpoint) keeps its session. */
  setPeers(peers: readonly WireGuardPeer[]): void;
  peers(): WireGuardPeerStatus[];
  /** The last TAI64N sent (12 bytes): persist it and pass it back as tai64nFloor. */
  lastTai64n(): Buffer;
  /**
   * This host's new private key (32 bytes, copied; the caller wipes its
   * own). Sessions and handshakes under the old key end; the peers stay and
   * handshake again under the new key on their next packet.
   */
  setPrivateKey(privateKey: Buffer): void;
  counters(): WireGuardCounters;
  /**
   * How packets are sealed and opened: 'direct' (libcrypto's ChaCha20 and Poly1305 called below EVP, as Node's
   * bundled OpenSSL allows) or 'evp' (through EVP: a Node on a shared libcrypto, or RUDDER_WG_CRYPTO=evp).
   */
  readonly cipher: 'direct' | 'evp';
}

export interface NativeDataPlane extends DataPlane {
  /** Name of the TUN device as the kernel created it. */
  readonly ifname: string;
  readonly offloads: DataPlaneOffloads;
  counters(): NativeDataPlaneCounters;
}

type CounterKey = keyof NativeDataPlaneCounters;

/**
 * The counters this module promises, all 0: checked against the addon's
 * counterNames at load and the base of every counters() snapshot. The
 * compiler keeps it in step with the interface (a key missing or extra here
 * does not compile); their order and the shared-memory layout come from the
 * addon (native/dataplane/counters.h).
 */
const ZERO: Readonly<NativeDataPlaneCounters> = {
  txPackets: 0,
  txBytes: 0,
  rxPackets: 0,
  rxBytes: 0,
  dropNoRoute: 0,
  dropUnknownSender: 0,
  dropMalformed: 0,
  dropTtl: 0,
  dropNotLocal: 0,
  tunErrors: 0,
  socketErrors: 0,
  icmpSent: 0,
  dropNotIPv4: 0,
  txGsoPackets: 0,
  rxGroPackets: 0,
  txIPv6Packets: 0,
  rxIPv6Packets: 0,
  dropTooBig: 0,
  dropLinkLocal: 0,
  txGsoRefused: 0,
  servedPackets: 0,
  lingers: 0,
  lingerFound: 0,
};

const WG_ZERO: Readonly<WireGuardCounters> = {
  ...ZERO,
  wgHandshakesSent: 0,
  wgHandshakesReceived: 0,
  wgHandshakesCompleted: 0,
  wgCookiesSent: 0,
  wgDropBadMac: 0,
  wgDropReplay: 0,
  wgDropUnknownIndex: 0,
  wgDropCookieRequired: 0,
  wgDropAllowedIps: 0,
  wgDropNoKeypair: 0,
  wgDropExpired: 0,
};

type WgCounterKey = keyof WireGuardCounters;

const isCounterKey = (name: string): name is WgCounterKey => Object.hasOwn(WG_ZERO, name);
const isPlainKey = (name: WgCounterKey): name is CounterKey => Object.hasOwn(ZERO, name);

/** The addon and, for each of its counters in shared-memory order, the name it is read under. */
interface Loaded {
  addon: RawAddon;
  names: readonly WgCounterKey[];
}

let loaded: Loaded | undefined;

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isRawAddon(v: unknown): v is RawAddon {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    Array.isArray(o.counterNames) &&
    o.counterNames.every((n) => typeof n === 'string') &&
    typeof o.open === 'function' &&
    typeof o.setRoutes === 'function' &&
    typeof o.setPeers === 'function' &&
    typeof o.peers === 'function' &&
    typeof o.lastTai64n === 'function' &&
    typeof o.setPrivateKey === 'function' &&
    typeof o.stop === 'function'
  );
}

function addon(): Loaded {
  if (loaded) return loaded;
  const mod = requireAddon('E_DATAPLANE');
  if (!isRawAddon(mod)) {
    throw new RudderError('E_DATAPLANE', `native addon at ${ADDON_PATH} has an unexpected shape: run ./build to rebuild it`);
  }
  const names = mod.counterNames.filter(isCounterKey);
  for (const key of Object.keys(WG_ZERO)) {
    if (!mod.counterNames.includes(key)) {
      throw new RudderError('E_DATAPLANE', `native addon lacks counter ${key}: run ./build to rebuild it`);
    }
  }
  if (names.length !== mod.counterNames.length) {
    const extra = mod.counterNames.filter((n) => !isCounterKey(n)).join(', ');
    throw new RudderError('E_DATAPLANE', `native addon has counters this build does not know (${extra}): run ./build to rebuild it`);
  }
  loaded = { addon: mod, names };
  return loaded;
}

/** Runs an addon call, turning its errors (errno text included) into RudderError E_DATAPLANE. */
function call<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof RudderError) throw e;
    throw new RudderError('E_DATAPLANE', `data plane ${what}: ${errorMessage(e)}`, { cause: e });
  }
}

const inRange = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

function checkInt(what: string, v: unknown, min: number, max: number): number {
  if (!inRange(v, min, max)) {
    throw new RudderError('E_DATAPLANE', `data plane: ${what} must be an integer ${min}..${max}, got ${String(v)}`);
  }
  return v;
}

const U32_MAX = 0xffffffff;
const U128_MAX = (1n << 128n) - 1n;

/** A 128-bit address as the 16 bytes of its network order, checked once here. */
function ip6Bytes(what: string, v: unknown): Buffer {
  if (typeof v !== 'bigint' || v < 0n || v > U128_MAX) {
    throw new RudderError('E_DATAPLANE', `data plane: ${what} must be an IPv6 address (a bigint 0..2^128-1), got ${String(v)}`);
  }
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(v >> 64n, 0);
  b.writeBigUInt64BE(v & 0xffffffffffffffffn, 8);
  return b;
}

function isOffloads(v: unknown): v is DataPlaneOffloads {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    ['requested', 'tunVnetHdr', 'tso', 'uso', 'udpGso', 'udpGro', 'busyPoll'].every((k) => typeof o[k] === 'boolean') &&
    typeof o.queues === 'number' &&
    typeof o.note === 'string'
  );
}

function checkBool(what: string, v: unknown): boolean {
  if (typeof v !== 'boolean') {
    throw new RudderError('E_DATAPLANE', `data plane: ${what} must be a boolean, got ${String(v)}`);
  }
  return v;
}

function checkUnderlay(v: unknown): UnderlayFamily {
  if (v !== 'ipv4' && v !== 'ipv6') throw new RudderError('E_DATAPLANE', `data plane: underlay must be "ipv4" or "ipv6", got ${JSON.stringify(v)}`);
  return v;
}

/**
 * A route's or peer's endpoint address as four big-endian words at flat[at..at+3]:
 * the PublicIPv6 on an IPv6 underlay, else ::ffff:PublicIP. `what` names it in errors.
 */
function putEndpoint(flat: Uint32Array, at: number, v6: boolean, what: string, publicIP: unknown, publicIPv6: unknown): void {
  if (v6) {
    if (typeof publicIPv6 !== 'bigint' || publicIPv6 === 0n) {
      throw new RudderError('E_DATAPLANE', `data plane: ${what}.publicIPv6 must be a non-zero IPv6 address (a bigint) on an IPv6 underlay, got ${String(publicIPv6)}`);
    }
    const b = ip6Bytes(`${what}.publicIPv6`, publicIPv6);
    for (let k = 0; k < 4; k++) flat[at + k] = b.readUInt32BE(4 * k);
    return;
  }
  flat[at] = 0;
  flat[at + 1] = 0;
  flat[at + 2] = 0xffff;
  flat[at + 3] = checkInt(`${what}.publicIP`, publicIP, 1, U32_MAX);
}

function toRawOptions(opts: DataPlaneOptions): RawOpenOptions {
  if (typeof opts.tunName !== 'string' || opts.tunName.length === 0 || opts.tunName.length > 15) {
    throw new RudderError('E_DATAPLANE', `data plane: tunName must be 1..15 characters, got ${JSON.stringify(opts.tunName)}`);
  }
  const raw: RawOpenOptions = {
    tunName: opts.tunName,
    bindAddress: checkInt('bindAddress', opts.bindAddress, 0, U32_MAX),
    port: checkInt('port', opts.port, 1, 65535),
    localIp: checkInt('localSubnet.ip', opts.localSubnet.ip, 0, U32_MAX),
    localPrefix: checkInt('localSubnet.prefix', opts.localSubnet.prefix, 0, 32),
    icmpSource: checkInt('icmpSource', opts.icmpSource, 0, U32_MAX),
    mtu: checkInt('mtu', opts.mtu, 68, 65535),
    local6Prefix: 0,
    offloads: checkBool('offloads', opts.offloads ?? true),
    busyPoll: checkBool('busyPoll', opts.busyPoll ?? true),
    queues: checkInt('queues', opts.queues ?? 0, 0, MAX_QUEUES),
    ipv6Underlay: checkUnderlay(opts.underlay ?? 'ipv4') === 'ipv6',
  };
  if (raw.ipv6Underlay && raw.bindAddress !== 0) {
    throw new RudderError('E_DATAPLANE', `data plane: bindAddress must be 0 on an IPv6 underlay (its sockets bind [::]), got ${raw.bindAddress}`);
  }
  if (opts.localSubnet6 !== undefined) {
    raw.local6Net = ip6Bytes('localSubnet6.ip', opts.localSubnet6.ip);
    raw.local6Prefix = checkInt('localSubnet6.prefix', opts.localSubnet6.prefix, 1, 128);
  }
  if (opts.icmpSource6 !== undefined) raw.icmp6Source = ip6Bytes('icmpSource6', opts.icmpSource6);
  return raw;
}

/**
 * Routes as the addon reads them: [net, prefix, endpoint x4, port] per route (putEndpoint).
 * 5,000 routes per swap at scale: the labels of the error message are only built for a bad route.
 */
function packRoutes(routes: readonly DataPlaneRoute[], v6: boolean): Uint32Array {
  const flat = new Uint32Array(routes.length * 7);
  routes.forEach((r, i) => {
    if (!inRange(r.ip, 0, U32_MAX) || !inRange(r.prefix, 0, 32) || !inRange(r.port, 1, 65535)) {
      checkInt(`routes[${i}].ip`, r.ip, 0, U32_MAX);
      checkInt(`routes[${i}].prefix`, r.prefix, 0, 32);
      checkInt(`routes[${i}].port`, r.port, 1, 65535);
    }
    flat[7 * i] = r.ip;
    flat[7 * i + 1] = r.prefix;
    if (!v6 && inRange(r.publicIP, 1, U32_MAX)) {
      flat[7 * i + 4] = 0xffff;
      flat[7 * i + 5] = r.publicIP;
    } else {
      putEndpoint(flat, 7 * i + 2, v6, `routes[${i}]`, r.publicIP, r.publicIPv6);
    }
    flat[7 * i + 6] = r.port;
  });
  return flat;
}

/** IPv6 routes as the addon reads them: [net as four big-endian words, prefix, endpoint x4, port] per route. */
function packRoutes6(routes: readonly DataPlaneRoute6[], v6: boolean): Uint32Array {
  const flat = new Uint32Array(routes.length * 10);
  routes.forEach((r, i) => {
    const net = ip6Bytes(`routes6[${i}].ip`, r.ip);
    if (!inRange(r.prefix, 0, 128) || !inRange(r.port, 1, 65535)) {
      checkInt(`routes6[${i}].prefix`, r.prefix, 0, 128);
      checkInt(`routes6[${i}].port`, r.port, 1, 65535);
    }
    for (let k = 0; k < 4; k++) flat[10 * i + k] = net.readUInt32BE(4 * k);
    flat[10 * i + 4] = r.prefix;
    putEndpoint(flat, 10 * i + 5, v6, `routes6[${i}]`, r.publicIP, r.publicIPv6);
    flat[10 * i + 9] = r.port;
  });
  return flat;
}

interface Opened {
  a: RawAddon;
  names: readonly WgCounterKey[];
  ifname: string;
  offloads: DataPlaneOffloads;
  cipher: unknown;
  words: BigUint64Array;
  /** The handle while running; throws after stop. */
  live(what: string): RawHandle;
  stop(): void;
}

function openRaw(raw: RawOpenOptions): Opened {
  const { addon: a, names } = addon();
  const res = call(`open ${raw.tunName}`, () => a.open(raw));
  const words = new BigUint64Array(res.counters);
  const rawOff = res.offloads;
  if (!isOffloads(rawOff)) {
    call('stop after a bad open result', () => a.stop(res.handle));
    throw new RudderError('E_DATAPLANE', `native addon at ${ADDON_PATH} returned no offloads description: run ./build to rebuild it`);
  }
  let handle: RawHandle | undefined = res.handle;
  return {
    a,
    names,
    ifname: res.ifname,
    offloads: Object.freeze({ ...rawOff }),
    cipher: res.cipher,
    words,
    live(what: string): RawHandle {
      if (handle === undefined) throw new RudderError('E_DATAPLANE', `data plane ${res.ifname}: ${what} after stop`);
      return handle;
    },
    stop(): void {
      const h = handle;
      if (h === undefined) return;
      handle = undefined;
      call(`${res.ifname} stop`, () => a.stop(h));
    },
  };
}

/**
 * Creates the TUN device (IFF_TUN|IFF_NO_PI, plus IFF_VNET_HDR and TSO when
 * offloads are on and granted; not configured: the backend sets address, MTU
 * and routes), binds the UDP socket and starts the threads with an empty route
 * table. `offloads` on the result says what the kernel granted. Throws
 * RudderError E_DATAPLANE (with the errno text).
 */
export function openDataPlane(opts: DataPlaneOptions): NativeDataPlane {
  const raw = toRawOptions(opts);
  const o = openRaw(raw);
  return {
    ifname: o.ifname,
    offloads: o.offloads,
    setRoutes(routes: readonly DataPlaneRoute[], routes6: readonly DataPlaneRoute6[] = []): void {
      const flat = packRoutes(routes, raw.ipv6Underlay);
      const flat6 = packRoutes6(routes6, raw.ipv6Underlay);
      const h = o.live('setRoutes');
      call(`${o.ifname} setRoutes`, () => o.a.setRoutes(h, flat, flat6));
    },
    counters(): NativeDataPlaneCounters {
      const out = { ...ZERO };
      o.names.forEach((key, i) => {
        if (isPlainKey(key)) out[key] = Number(o.words[i] ?? 0n);
      });
      return out;
    },
    stop: () => o.stop(),
  };
}

function checkBuffer(what: string, v: unknown, len: number): Buffer {
  if (!Buffer.isBuffer(v) || v.length !== len) {
    const got = Buffer.isBuffer(v) ? `${v.length} bytes` : typeof v;
    throw new RudderError('E_DATAPLANE', `data plane: ${what} must be a Buffer of ${len} bytes, got ${got}`);
  }
  return v;
}

function packPeers(peers: readonly WireGuardPeer[], v6: boolean): RawPeer[] {
  const seen = new Set<string>();
  return peers.map((p, i) => {
    const publicKey = Buffer.from(checkBuffer(`peers[${i}].publicKey`, p.publicKey, 32));
    const k = publicKey.toString('base64');
    if (seen.has(k)) throw new RudderError('E_DATAPLANE', `data plane: peers[${i}].publicKey ${k} appears twice, expected each peer once`);
    seen.add(k);
    let ip = 0;
    let ip6: Buffer | undefined;
    if (v6) {
      if (typeof p.endpoint.ip6 !== 'bigint' || p.endpoint.ip6 === 0n) {
        throw new RudderError('E_DATAPLANE', `data plane: peers[${i}].endpoint.ip6 must be a non-zero IPv6 address (a bigint) on an IPv6 underlay, got ${String(p.endpoint.ip6)}`);
      }
      ip6 = ip6Bytes(`peers[${i}].endpoint.ip6`, p.endpoint.ip6);
    } else {
      ip = checkInt(`peers[${i}].endpoint.ip`, p.endpoint.ip, 1, U32_MAX);
    }
    const port = checkInt(`peers[${i}].endpoint.port`, p.endpoint.port, 1, 65535);
    const allowed = new Uint32Array(p.allowedIps.length * 2);
    p.allowedIps.forEach((a, j) => {
      allowed[2 * j] = checkInt(`peers[${i}].allowedIps[${j}].ip`, a.ip, 0, U32_MAX);
      allowed[2 * j + 1] = checkInt(`peers[${i}].allowedIps[${j}].prefix`, a.prefix, 0, 32);
    });
    const six = p.allowedIps6 ?? [];
    const allowed6 = new Uint32Array(six.length * 5);
    six.forEach((a, j) => {
      const net = ip6Bytes(`peers[${i}].allowedIps6[${j}].ip`, a.ip);
      for (let w = 0; w < 4; w++) allowed6[5 * j + w] = net.readUInt32BE(4 * w);
      allowed6[5 * j + 4] = checkInt(`peers[${i}].allowedIps6[${j}].prefix`, a.prefix, 0, 128);
    });
    return { publicKey, ip, ...(ip6 !== undefined ? { ip6 } : {}), port, allowed, allowed6 };
  });
}

function isPeerStatus(v: unknown): v is RawPeerStatus {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    Buffer.isBuffer(o.publicKey) &&
    ['ip', 'port', 'lastHandshakeMs', 'rxBytes', 'txBytes'].every((k) => typeof o[k] === 'number') &&
    o.allowed instanceof Uint32Array &&
    (o.allowed6 === undefined || o.allowed6 instanceof Uint32Array) &&
    (o.ip6 === undefined || (Buffer.isBuffer(o.ip6) && o.ip6.length === 16))
  );
}

function toPeerStatus(r: RawPeerStatus): WireGuardPeerStatus {
  const allowedIps: WireGuardPrefix[] = [];
  for (let j = 0; j + 1 < r.allowed.length; j += 2) allowedIps.push({ ip: r.allowed[j] ?? 0, prefix: r.allowed[j + 1] ?? 0 });
  const allowedIps6: WireGuardPrefix6[] = [];
  const a6 = r.allowed6 ?? new Uint32Array(0);
  for (let j = 0; j + 4 < a6.length; j += 5) {
    let ip = 0n;
    for (let w = 0; w < 4; w++) ip = (ip << 32n) | BigInt(a6[j + w] ?? 0);
    allowedIps6.push({ ip, prefix: a6[j + 4] ?? 0 });
  }
  const ip6 = r.ip6 === undefined ? 0n : (r.ip6.readBigUInt64BE(0) << 64n) | r.ip6.readBigUInt64BE(8);
  return {
    publicKey: r.publicKey,
    endpoint: { ip: r.ip, port: r.port, ...(ip6 !== 0n ? { ip6 } : {}) },
    allowedIps,
    allowedIps6,
    latestHandshakeMs: r.lastHandshakeMs,
    rxBytes: r.rxBytes,
    txBytes: r.txBytes,
  };
}

/**
 * Opens the data plane in WireGuard mode: like openDataPlane, but every
 * packet to a peer is a WireGuard transport message (sessions set up by
 * handshakes in the data plane itself), and routes come from setPeers
 * (setRoutes is refused). Throws RudderError E_DATAPLANE.
 */
export function openWireGuardDataPlane(opts: DataPlaneOptions, wg: WireGuardOptions): WireGuardDataPlane {
  const raw = toRawOptions(opts);
  // Copies: the addon wipes what it is given.
  raw.wireguard = {
    privateKey: Buffer.from(checkBuffer('wireguard.privateKey', wg.privateKey, 32)),
    persistentKeepalive: checkInt('wireguard.persistentKeepalive', wg.persistentKeepalive ?? 0, 0, 65535),
  };
  if (wg.psk !== undefined) raw.wireguard.psk = Buffer.from(checkBuffer('wireguard.psk', wg.psk, 32));
  if (wg.tai64nFloor !== undefined) raw.wireguard.tai64nFloor = Buffer.from(checkBuffer('wireguard.tai64nFloor', wg.tai64nFloor, 12));
  let o: Opened;
  try {
    o = openRaw(raw);
  } finally {
    raw.wireguard.privateKey.fill(0);
    raw.wireguard.psk?.fill(0);
  }
  if (o.cipher !== 'direct' && o.cipher !== 'evp') {
    o.stop();
    throw new RudderError('E_DATAPLANE', `native addon at ${ADDON_PATH} did not say how it seals (cipher ${String(o.cipher)}): run ./build to rebuild it`);
  }
  const cipher = o.cipher;
  return {
    ifname: o.ifname,
    offloads: o.offloads,
    cipher,
    setRoutes(): void {
      throw new RudderError('E_DATAPLANE', `data plane ${o.ifname}: a WireGuard data plane takes setPeers, not setRoutes`);
    },
    setPeers(peers: readonly WireGuardPeer[]): void {
      const raws = packPeers(peers, raw.ipv6Underlay);
      const h = o.live('setPeers');
      call(`${o.ifname} setPeers`, () => o.a.setPeers(h, raws));
    },
    peers(): WireGuardPeerStatus[] {
      const h = o.live('peers');
      const r = call(`${o.ifname} peers`, () => o.a.peers(h));
      if (!Array.isArray(r) || !r.every(isPeerStatus)) {
        throw new RudderError('E_DATAPLANE', `native addon at ${ADDON_PATH} returned an unexpected peer status: run ./build to rebuild it`);
      }
      return r.map(toPeerStatus);
    },
    lastTai64n(): Buffer {
      const h = o.live('lastTai64n');
      return call(`${o.ifname} lastTai64n`, () => o.a.lastTai64n(h));
    },
    setPrivateKey(privateKey: Buffer): void {
      const copy = Buffer.from(checkBuffer('privateKey', privateKey, 32));
      try {
        const h = o.live('setPrivateKey');
        call(`${o.ifname} setPrivateKey`, () => o.a.setPrivateKey(h, copy));
      } finally {
        copy.fill(0);
      }
    },
    counters(): WireGuardCounters {
      const out = { ...WG_ZERO };
      o.names.forEach((key, i) => {
        out[key] = Number(o.words[i] ?? 0n);
      });
      return out;
    },
    stop: () => o.stop(),
  };
}
