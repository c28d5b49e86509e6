/**
 * The typed face of the native data plane (native/, N-API addon
 * rudder_native.node). JavaScript opens it, replaces its route table and
 * reads its counters; the addon's own threads move every packet.
 *
 * The addon is loaded lazily, on first use, so that importing this module
 * never fails on a machine where the addon was not built yet.
 */
import * as path from 'node:path';
import { MAX_QUEUES } from './limits';
import { type ErrorCode, RudderError } from '../errors';
import type { DataPlane, DataPlaneCounters, DataPlaneOffloads, DataPlaneOptions, DataPlaneRoute } from './types';

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
  offloads: boolean;
  busyPoll: boolean;
  queues: number;
}

interface RawOpenResult {
  handle: RawHandle;
  /** 64-bit counters written by the data plane threads, laid out as `counterNames` (native/dataplane/counters.h). */
  counters: ArrayBuffer;
  /** Device name the kernel gave the TUN. */
  ifname: string;
  /** What the kernel granted (checked by isOffloads before use). */
  offloads: unknown;
}

/** The raw shape of rudder_native.node. */
interface RawAddon {
  readonly counterNames: readonly string[];
  open(opts: RawOpenOptions): RawOpenResult;
  /** Flat quadruples: [net, prefix, publicIP, port, ...]. */
  setRoutes(handle: RawHandle, routes: Uint32Array): void;
  stop(handle: RawHandle): void;
}

/** Counters of this implementation: the contract's plus packets that were not IPv4 at all. */
export interface NativeDataPlaneCounters extends DataPlaneCounters {
  /** Non-IPv4 packets read from the TUN (e.g. IPv6 router solicitations), dropped. */
  dropNotIPv4: number;
  /** TCP super-packets read from the TUN and cut into segments (TSO), each counted in txPackets per segment. */
  txGsoPackets: number;
  /** Super-packets written to the TUN after coalescing received segments (GRO), counted in rxPackets per segment. */
  rxGroPackets: number;
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
};

const isCounterKey = (name: string): name is CounterKey => Object.hasOwn(ZERO, name);

/** Where ./build puts the addon, relative to dist/src/dataplane/native.js. */
export const ADDON_PATH = path.resolve(__dirname, '..', '..', '..', 'native', 'build', 'Release', 'rudder_native.node');

/** The addon and, for each of its counters in shared-memory order, the name it is read under. */
interface Loaded {
  addon: RawAddon;
  names: readonly CounterKey[];
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
    typeof o.stop === 'function'
  );
}

/**
 * Loads rudder_native.node (the data plane and sd_notify share it); a missing
 * or unloadable addon is a RudderError of `code` that says to run ./build.
 */
export function requireAddon(code: ErrorCode): unknown {
  try {
    // An addon is loaded by require from a path known only at run time.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(ADDON_PATH) as unknown;
  } catch (e) {
    const errno = (e as { code?: unknown }).code;
    const why =
      errno === 'MODULE_NOT_FOUND'
        ? `native addon not found at ${ADDON_PATH}`
        : `native addon at ${ADDON_PATH} cannot be loaded (${errorMessage(e)})`;
    throw new RudderError(code, `${why}: run ./build to compile it`, { cause: e });
  }
}

function addon(): Loaded {
  if (loaded) return loaded;
  const mod = requireAddon('E_DATAPLANE');
  if (!isRawAddon(mod)) {
    throw new RudderError('E_DATAPLANE', `native addon at ${ADDON_PATH} has an unexpected shape: run ./build to rebuild it`);
  }
  const names = mod.counterNames.filter(isCounterKey);
  for (const key of Object.keys(ZERO)) {
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

function toRawOptions(opts: DataPlaneOptions): RawOpenOptions {
  if (typeof opts.tunName !== 'string' || opts.tunName.length === 0 || opts.tunName.length > 15) {
    throw new RudderError('E_DATAPLANE', `data plane: tunName must be 1..15 characters, got ${JSON.stringify(opts.tunName)}`);
  }
  // Checked for the contract's sake, not passed on: the data plane takes any packet size.
  checkInt('mtu', opts.mtu, 68, 65535);
  return {
    tunName: opts.tunName,
    bindAddress: checkInt('bindAddress', opts.bindAddress, 0, U32_MAX),
    port: checkInt('port', opts.port, 1, 65535),
    localIp: checkInt('localSubnet.ip', opts.localSubnet.ip, 0, U32_MAX),
    localPrefix: checkInt('localSubnet.prefix', opts.localSubnet.prefix, 0, 32),
    icmpSource: checkInt('icmpSource', opts.icmpSource, 0, U32_MAX),
    offloads: checkBool('offloads', opts.offloads ?? true),
    busyPoll: checkBool('busyPoll', opts.busyPoll ?? true),
    queues: checkInt('queues', opts.queues ?? 0, 0, MAX_QUEUES),
  };
}

/** 5,000 routes per swap at scale: the labels of the error message are only built for a bad route. */
function packRoutes(routes: readonly DataPlaneRoute[]): Uint32Array {
  const flat = new Uint32Array(routes.length * 4);
  routes.forEach((r, i) => {
    if (!inRange(r.ip, 0, U32_MAX) || !inRange(r.prefix, 0, 32) || !inRange(r.publicIP, 1, U32_MAX) || !inRange(r.port, 1, 65535)) {
      checkInt(`routes[${i}].ip`, r.ip, 0, U32_MAX);
      checkInt(`routes[${i}].prefix`, r.prefix, 0, 32);
      checkInt(`routes[${i}].publicIP`, r.publicIP, 1, U32_MAX);
      checkInt(`routes[${i}].port`, r.port, 1, 65535);
    }
    flat[4 * i] = r.ip;
    flat[4 * i + 1] = r.prefix;
    flat[4 * i + 2] = r.publicIP;
    flat[4 * i + 3] = r.port;
  });
  return flat;
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
  const { addon: a, names } = addon();
  const res = call(`open ${raw.tunName}`, () => a.open(raw));
  const words = new BigUint64Array(res.counters);
  const rawOff = res.offloads;
  if (!isOffloads(rawOff)) {
    call('stop after a bad open result', () => a.stop(res.handle));
    throw new RudderError('E_DATAPLANE', `native addon at ${ADDON_PATH} returned no offloads description: run ./build to rebuild it`);
  }
  const offloads: DataPlaneOffloads = Object.freeze({ ...rawOff });
  let handle: RawHandle | undefined = res.handle;


  return {
    ifname: res.ifname,
    offloads,
    setRoutes(routes: readonly DataPlaneRoute[]): void {
      const flat = packRoutes(routes);
      const h = handle;
      if (h === undefined) throw new RudderError('E_DATAPLANE', `data plane ${res.ifname}: setRoutes after stop`);
      call(`${res.ifname} setRoutes`, () => a.setRoutes(h, flat));
    },
    counters(): NativeDataPlaneCounters {
      const out = { ...ZERO };
      names.forEach((key, i) => {
        out[key] = Number(words[i] ?? 0n);
      });
      return out;
    },
    stop(): void {
      const h = handle;
      if (h === undefined) return;
      handle = undefined;
      call(`${res.ifname} stop`, () => a.stop(h));
    },
  };
}
