/**
 * The wireguard backend: the TUN device `rudder-wg` and the native data
 * plane in WireGuard mode, which encrypts and authenticates every packet to
 * a peer (sessions from handshakes the data plane runs itself). What differs
 * from udp: the private key file (`key.ts`), the published
 * `{"PublicKey","Port"}`, and a peer set (`table.ts`, handed over with
 * `setPeers`) instead of a route table. The start up to the routed device
 * is udp's (../tun-network.ts): the device, the Network route and its
 * fail-closed `unreachable` twin, stale routes removed. Key rotation (`rotateKey`, asked for by SIGHUP
 * or by `rudder wireguard rotate-key` over the control socket of
 * `control.ts`): a new key into the key file, the data plane swaps to it,
 * and the lease is republished with the new PublicKey (ctx.publish). The
 * design is in docs/architecture.md.
 *
 * Runs on the daemon's event loop only; apply() calls are serial.
 */
import { RudderError, describeError } from '../../errors';
import { formatCidr, formatIp } from '../../ip/ipv4';
import { formatCidr6 } from '../../ip/ipv6';
import type { Logger } from '../../log';
import type { DataPlaneOptions, UnderlayFamily } from '../../dataplane/types';
import { openWireGuardDataPlane, type WireGuardDataPlane, type WireGuardOptions } from '../../dataplane/native';
import type { Lease, LeaseEvent } from '../../subnet/lease';
import { DEFAULT_WIREGUARD_PORT } from '../../config';
import type { Backend, BackendContext, Network } from '../types';
import { StartGuard, WG_TUN } from '../common';
import { logIgnored } from '../peers';
import { checkTunMtu, counterLogger, startTunDataPlane, tunDeps, tunLease, tunStop, underlayOf, type TunDeps } from '../tun-network';
import { SwapPacer, type PacerClock, type PacerOptions } from '../udp';
import { engineFromEnv } from '../udp/env';
import { generatePrivateKey, loadOrCreateKey, publicKeyOf, readTai64nFloor, replaceKeyFile, restoreKeyFile, tai64nFile, writeTai64nFloor } from './key';
import { serveControl } from './control';
import { WireGuardPeerTable, describePeer } from './table';
import { peerReport, startStatusSocket } from './uapi';

export { WireGuardPeerTable, endpointOf, parseBackendData } from './table';
export { loadOrCreateKey, publicKeyOf, rawPublicKeyOf, generatePrivateKey, parseKeyFile, tai64nFile, readTai64nFloor, writeTai64nFloor } from './key';
export { DEFAULT_UAPI_DIR, UAPI_DIR_ENV, formatGet, parseGet, queryUapi, uapiDir, uapiSocketPath } from './uapi';
export { controlSocketOf, requestRotate } from './control';

/** Outer IPv4 (20) + UDP (8) + WireGuard transport header (16) + tag (16), rounded up for IPv6 underlays (flannel's and wg-quick's 80). */
export const WIREGUARD_OVERHEAD = 80;
export const TUN_NAME = WG_TUN;
export const DEFAULT_KEY_FILE = '/var/lib/rudder/wireguard.key';
/** How often the counters are logged (at -v ≥ 1) and the TAI64N floor saved when it moved. */
export const SAVE_INTERVAL_MS = 10_000;

export interface WireGuardDeps extends TunDeps {
  openDataPlane?: (opts: DataPlaneOptions, wg: WireGuardOptions) => WireGuardDataPlane;
  /** Whether to serve `rudder wireguard rotate-key` on `<key file>.sock` (default true). */
  control?: boolean;
}

/** The native data plane; its module loads the addon on first use, so unit tests never need it. */
function nativeOpen(opts: DataPlaneOptions, wg: WireGuardOptions): WireGuardDataPlane {
  return openWireGuardDataPlane(opts, wg);
}

export function createWireGuardBackend(ctx: BackendContext, deps: WireGuardDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'wireguard' });
  const b = ctx.config.backend;
  const port = b.ListenPort ?? DEFAULT_WIREGUARD_PORT;
  const keyFile = ctx.wireguardKeyFile ?? DEFAULT_KEY_FILE;
  const floorFile = tai64nFile(keyFile);
  const mtu = b.MTU ?? ctx.extIface.mtu - WIREGUARD_OVERHEAD;
  const openDataPlane = deps.openDataPlane ?? nativeOpen;
  const { openNetlink, every, env, clock, pacer: pacing } = tunDeps(deps);
  let key: { privateKey: Buffer; publicKey: string } | undefined;

  return {
    type: 'wireguard',
    overhead: WIREGUARD_OVERHEAD,
    carriesIPv6: true,

    async prepare(): Promise<Record<string, unknown>> {
      const k = loadOrCreateKey(keyFile);
      for (const w of k.warnings) log.warn(w);
      log.info(k.created ? 'wireguard key created' : 'wireguard key loaded', { file: keyFile, publicKey: k.publicKey });
      key?.privateKey.fill(0);
      key = { privateKey: k.privateKey, publicKey: k.publicKey };
      return { PublicKey: k.publicKey, Port: port };
    },

    async start(own: Lease, signal: AbortSignal): Promise<Network> {
      const k = key;
      if (k === undefined) throw new RudderError('E_BACKEND', 'wireguard: start before prepare (no private key loaded)');
      key = undefined;
      const keys: OwnKeys = { current: k.publicKey, all: new Set([k.publicKey]) };
      const psk = typeof b.PSK === 'string' ? Buffer.from(b.PSK, 'base64') : undefined;
      const start = new StartGuard('wireguard', signal);
      const lease = tunLease(own, ctx.config);
      const { network, v4, own6, network6 } = lease;
      let dp: WireGuardDataPlane | undefined;
      let family: UnderlayFamily = 'ipv4';
      try {
        family = underlayOf('wireguard', ctx.extIface);
        checkTunMtu('wireguard', ctx.extIface, mtu, WIREGUARD_OVERHEAD, ' (or set Backend.MTU)');
        if (b.MTU !== undefined && b.MTU > ctx.extIface.mtu - WIREGUARD_OVERHEAD) {
          log.warn('Backend.MTU leaves less than the WireGuard overhead on the underlay: large packets will be fragmented', { mtu: b.MTU, underlayMtu: ctx.extIface.mtu, overhead: WIREGUARD_OVERHEAD });
        }
        const engine = engineFromEnv(env);
        const [floor, floorProblem] = readTai64nFloor(floorFile);
        if (floorProblem !== undefined) log.warn(floorProblem);
        const wg: WireGuardOptions = {
          privateKey: k.privateKey,
          ...(psk !== undefined ? { psk } : {}),
          persistentKeepalive: b.PersistentKeepaliveInterval ?? 0,
          ...(floor !== undefined ? { tai64nFloor: floor } : {}),
        };
        const opened = await startTunDataPlane(start, log, {
          backend: 'wireguard',
          dev: TUN_NAME,
          lease,
          ext: ctx.extIface,
          family,
          port,
          mtu,
          engine,
          openNetlink,
          open: (opts) => openDataPlane(opts, wg),
          // Runs before the data plane stops (undo runs in reverse).
          opened: (d) => start.undo('save the TAI64N floor', () => saveFloor(d, floorFile, log)),
        });
        dp = opened;
        start.check('serving the status socket');
        await startStatusSocket(start, log, { env, dev: TUN_NAME, dp: opened, keyFile, publicKey: () => keys.current, port, persistentKeepalive: b.PersistentKeepaliveInterval ?? 0 });
        start.check('returning the network');
      } catch (e) {
        await start.unwind(log);
        throw e;
      } finally {
        k.privateKey.fill(0);
        psk?.fill(0);
      }

      log.info('wireguard backend started', {
        dev: TUN_NAME,
        ...(v4 ? { address: `${formatIp(own.subnet.ip)}/32` } : {}),
        ...(own6 !== undefined && network6 !== undefined ? { address6: formatCidr6({ ip: own6.ip, prefix: 128 }), route6: `${formatCidr6(network6)} dev ${TUN_NAME}` } : {}),
        mtu,
        port,
        publicKey: k.publicKey,
        psk: psk !== undefined,
        persistentKeepalive: b.PersistentKeepaliveInterval ?? 0,
        route: `${formatCidr(network)} dev ${TUN_NAME}`,
        ...(family === 'ipv6' ? { underlay: family } : {}),
        bind: family === 'ipv4' ? formatIp(ctx.extIface.address) : '[::]',
        offloads: dp.offloads.tso && dp.offloads.udpGso && dp.offloads.udpGro,
        queues: dp.offloads.queues,
        cipher: dp.cipher,
      });
      const started = startedNetwork({ own, keys, port, dp, start, log, every, mtu, clock, pacing, floorFile, keyFile, publish: ctx.publish, underlay: family });
      if (deps.control ?? true) {
        try {
          const srv = await serveControl(keyFile, () => started.rotateKey(), log);
          start.undo('close the control socket', () => srv.close());
        } catch (e) {
          log.warn('wireguard: no control socket: `rudder wireguard rotate-key` will not reach this daemon (SIGHUP still rotates the key)', { error: describeError(e) });
        }
      }
      return started;
    },
  };
}

/** Saves the data plane's last TAI64N if it moved past what the file holds; never throws (a failure is logged). */
function saveFloor(dp: WireGuardDataPlane, file: string, log: Logger, last?: { hex: string }): void {
  try {
    const t = dp.lastTai64n();
    const hex = t.toString('hex');
    if (/^0*$/.test(hex) || hex === last?.hex) return;
    writeTai64nFloor(file, t);
    if (last !== undefined) last.hex = hex;
  } catch (e) {
    log.warn('wireguard: saving the TAI64N floor failed', { file, error: describeError(e) });
  }
}

/** This host's public key now, and every key it has held in this run (a lease with one of them is never a peer). */
interface OwnKeys {
  current: string;
  readonly all: Set<string>;
}

interface Started {
  readonly own: Lease;
  readonly keys: OwnKeys;
  readonly port: number;
  readonly dp: WireGuardDataPlane;
  readonly start: StartGuard;
  readonly log: Logger;
  readonly every: (ms: number, fn: () => void) => () => void;
  readonly mtu: number;
  readonly clock: PacerClock;
  readonly pacing: PacerOptions;
  readonly floorFile: string;
  readonly keyFile: string;
  readonly publish: ((backendData: Record<string, unknown>) => void) | undefined;
  readonly underlay: UnderlayFamily;
}

function startedNetwork({ own, keys, port, dp, start, log, every, mtu, clock, pacing, floorFile, keyFile, publish, underlay }: Started): Network & { rotateKey(): Promise<string> } {
  const table = new WireGuardPeerTable(own, keys.all, port, underlay);
  let reported = '';
  // Always the whole peer set, built when the swap runs: a paced swap carries every change made while it waited.
  const pacer = new SwapPacer(
    () => {
      const { peers, conflicts } = table.payload();
      const now = conflicts.join('\n');
      if (now !== reported) for (const c of conflicts) log.warn('wireguard: lease left out', { why: c });
      reported = now;
      try {
        dp.setPeers(peers);
      } catch (e) {
        throw new RudderError('E_BACKEND', 'wireguard: updating the data plane peer set failed', { cause: e });
      }
    },
    clock,
    pacing,
  );
  const saved = { hex: '' };
  const logCounters = counterLogger('wireguard', log, () => dp.counters());
  const cancelTick = every(SAVE_INTERVAL_MS, () => {
    saveFloor(dp, floorFile, log, saved);
    if (log.verbosity >= 1) logCounters();
  });
  const life = tunStop('wireguard', start, log, () => {
    cancelTick();
    pacer.cancel(new RudderError('E_BACKEND', 'wireguard: stopped before the peer set was handed to the data plane'));
  });

  /**
   * A new key: written to the key file first (a failure changes nothing),
   * then the data plane's (if it refuses, the old file is put back), then
   * the lease. Synchronous from start to end, so rotations never interleave.
   */
  const rotate = (): string => {
    if (publish === undefined) throw new RudderError('E_BACKEND', 'wireguard: this daemon cannot republish its lease, so it cannot rotate its key');
    const priv = generatePrivateKey();
    try {
      const pub = publicKeyOf(priv);
      const old = replaceKeyFile(keyFile, priv);
      try {
        dp.setPrivateKey(priv);
      } catch (e) {
        if (old !== undefined) {
          try {
            restoreKeyFile(keyFile, old);
          } catch (re) {
            log.error('wireguard: putting the old key back into the key file failed: a restart will use the new key', { file: keyFile, error: describeError(re) });
          }
        }
        throw new RudderError('E_BACKEND', 'wireguard: the data plane refused the new key', { cause: e });
      } finally {
        old?.fill(0);
      }
      const previous = keys.current;
      keys.current = pub;
      keys.all.add(pub);
      publish({ PublicKey: pub, Port: port });
      log.info('wireguard key rotated; republishing the lease', { file: keyFile, publicKey: pub, previous });
      return pub;
    } finally {
      priv.fill(0);
    }
  };

  return {
    mtu,
    async apply(events: readonly LeaseEvent[]): Promise<void> {
      life.live('apply');
      const ch = table.apply(events);
      logIgnored(log, ch.ignored);
      for (const x of ch.invalid) log.warn('ignoring wireguard lease', { subnet: formatCidr(x.lease.subnet), why: x.why });
      if (ch.added.length === 0 && ch.removed.length === 0) return;
      await pacer.request();
      const addedKeys = new Set(ch.added.map((p) => p.key));
      for (const p of ch.removed) if (!addedKeys.has(p.key)) log.info('wireguard peer removed', describePeer(p));
      for (const p of ch.added) log.info('wireguard peer set', describePeer(p));
    },
    counters(): Record<string, number> {
      life.live('counters');
      return { ...dp.counters() };
    },
    peerStatus() {
      life.live('peer status');
      return peerReport(dp.peers());
    },
    rotateKey(): Promise<string> {
      try {
        life.live('key rotation');
        return Promise.resolve(rotate());
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    stop: () => life.stop(),
  };
}
