/**
 * The udp backend: the TUN device `rudder0` and the native data plane, which
 * carries each IP packet in one UDP datagram to the PublicIP (on an IPv6
 * underlay the PublicIPv6) and port of the lease holding its destination.
 * The start it shares with wireguard (device, Network route and its
 * fail-closed `unreachable` twin, stale routes removed) is in
 * ../tun-network.ts; this file holds udp's own: the port published, the
 * MTU, the route table handed to the data plane (paced), the offload log.
 * The design (ports, fail closed, pacing, offloads, queues) is in
 * docs/architecture.md, "udp".
 *
 * Runs on the daemon's event loop only; apply() calls are serial.
 */
import { RudderError } from '../../errors';
import { formatCidr, formatIp } from '../../ip/ipv4';
import { formatCidr6 } from '../../ip/ipv6';
import type { Logger } from '../../log';
import type { DataPlane, DataPlaneOptions, UnderlayFamily } from '../../dataplane/types';
import { openDataPlane as openNativeDataPlane } from '../../dataplane/native';
import { formatLeaseKey, type Lease, type LeaseEvent } from '../../subnet/lease';
import type { Backend, BackendContext, Network } from '../types';
import { StartGuard, UDP_TUN } from '../common';
import { logIgnored } from '../peers';
import { checkTunMtu, counterLogger, startTunDataPlane, tunDeps, tunLease, tunStop, underlayOf, type TunDeps } from '../tun-network';
import { DEFAULT_UDP_PORT, UdpPeerTable, describeRoute } from './table';
import { SwapPacer, type PacerClock, type PacerOptions } from './pacer';
import { OFFLOADS_ENV, engineFromEnv } from './env';

export { DEFAULT_UDP_PORT, UdpPeerTable, peerAddress, peerPort } from './table';
export { SwapPacer, DEFAULT_PACER, type PacerClock, type PacerOptions } from './pacer';
export { BUSY_POLL_ENV, OFFLOADS_ENV, QUEUES_ENV, busyPollFromEnv, offloadsFromEnv, queuesFromEnv } from './env';

/** Outer IPv4 (20) + UDP (8); on an IPv6 underlay the outer header is 40 (UDP_OVERHEAD_V6). */
export const UDP_OVERHEAD = 28;
export const UDP_OVERHEAD_V6 = 48;
export const TUN_NAME = UDP_TUN;
export const STATS_INTERVAL_MS = 10_000;

export { FALLBACK_METRIC } from '../tun-network';

export interface UdpDeps extends TunDeps {
  openDataPlane?: (opts: DataPlaneOptions) => DataPlane;
}

/** The native data plane; its module loads the addon on first use, so unit tests and other backends never need it. */
function nativeOpenDataPlane(opts: DataPlaneOptions): DataPlane {
  return openNativeDataPlane(opts);
}

export function createUdpBackend(ctx: BackendContext, deps: UdpDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'udp' });
  const networkPort = ctx.config.backend.Port ?? DEFAULT_UDP_PORT;
  const port = ctx.portFlag ?? networkPort;
  const overhead = ctx.extIface.publicIP === 0 ? UDP_OVERHEAD_V6 : UDP_OVERHEAD;
  const mtu = ctx.extIface.mtu - overhead;
  const openDataPlane = deps.openDataPlane ?? nativeOpenDataPlane;
  const { openNetlink, every, env, clock, pacer: pacing } = tunDeps(deps);

  return {
    type: 'udp',
    overhead,
    carriesIPv6: true,

    async prepare(): Promise<Record<string, unknown>> {
      return port === networkPort ? {} : { Port: port };
    },

    async start(own: Lease, signal: AbortSignal): Promise<Network> {
      // One underlay family per host (underlayOf); asked at start, so a host without either fails there, named.
      const family = underlayOf('udp', ctx.extIface);
      checkTunMtu('udp', ctx.extIface, mtu, overhead);
      const engine = engineFromEnv(env);
      const start = new StartGuard('udp', signal);
      const lease = tunLease(own, ctx.config);
      const { network, v4, own6, network6 } = lease;
      let dp: DataPlane | undefined;
      try {
        dp = await startTunDataPlane(start, log, { backend: 'udp', dev: TUN_NAME, lease, ext: ctx.extIface, family, port, mtu, engine, openNetlink, open: openDataPlane });
        start.check('returning the network');
      } catch (e) {
        await start.unwind(log);
        throw e;
      }

      log.info('udp backend started', {
        dev: TUN_NAME,
        ...(v4 ? { address: `${formatIp(own.subnet.ip)}/32`, route: `${formatCidr(network)} dev ${TUN_NAME}` } : {}),
        ...(own6 !== undefined && network6 !== undefined ? { address6: `${formatCidr6({ ip: own6.ip, prefix: 128 })}`, route6: `${formatCidr6(network6)} dev ${TUN_NAME}` } : {}),
        mtu,
        port,
        ...(family === 'ipv6' ? { underlay: family } : {}),
        bind: family === 'ipv4' ? formatIp(ctx.extIface.address) : '[::]',
      });
      logOffloads(log, dp, engine.offloads);
      return startedNetwork({ own, dp, start, log, networkPort, every, mtu, clock, pacing, underlay: family });
    },
  };
}

function logOffloads(log: Logger, dp: DataPlane, requested: boolean): void {
  const o = dp.offloads;
  if (o === undefined) return;
  const fields = { tso: o.tso, uso: o.uso, udpGso: o.udpGso, udpGro: o.udpGro, coalesce: o.tunVnetHdr, busyPoll: o.busyPoll, queues: o.queues };
  if (!requested) {
    log.info('udp data plane offloads off', { reason: `${OFFLOADS_ENV} turns them off`, ...fields });
  } else if (o.tso && o.udpGso && o.udpGro && o.tunVnetHdr) {
    log.info('udp data plane offloads on', fields);
  } else {
    log.warn('udp data plane offloads partly unavailable: falling back where the kernel refused', { ...fields, why: o.note });
  }
}

interface Started {
  readonly own: Lease;
  readonly dp: DataPlane;
  /** Its undo list is what stop() runs. */
  readonly start: StartGuard;
  readonly log: Logger;
  readonly networkPort: number;
  readonly every: (ms: number, fn: () => void) => () => void;
  readonly mtu: number;
  readonly clock: PacerClock;
  readonly pacing: PacerOptions;
  readonly underlay: UnderlayFamily;
}

function startedNetwork({ own, dp, start, log, networkPort, every, mtu, clock, pacing, underlay }: Started): Network {
  const table = new UdpPeerTable(networkPort, own, underlay);
  // Always the whole table, read when the swap runs: a paced swap carries every change made while it waited.
  const pacer = new SwapPacer(
    () => {
      try {
        dp.setRoutes(table.table(), table.table6());
      } catch (e) {
        throw new RudderError('E_BACKEND', `udp: updating the data plane route table failed`, { cause: e });
      }
    },
    clock,
    pacing,
  );
  const cancelSummary = log.verbosity >= 1 ? every(STATS_INTERVAL_MS, counterLogger('udp', log, () => dp.counters())) : () => undefined;
  const life = tunStop('udp', start, log, () => {
    cancelSummary();
    pacer.cancel(new RudderError('E_BACKEND', 'udp: stopped before the route table was handed to the data plane'));
  });

  return {
    mtu,
    async apply(events: readonly LeaseEvent[]): Promise<void> {
      life.live('apply');
      const ch = table.apply(events);
      logIgnored(log, ch.ignored);
      for (const { lease, why } of ch.invalid) log.warn('udp: lease has no route this host can use', { key: formatLeaseKey(lease), why });
      if (ch.set.length === 0 && ch.removed.length === 0 && ch.set6.length === 0 && ch.removed6.length === 0) return;
      await pacer.request();
      for (const r of [...ch.set, ...ch.set6]) log.debug('route set', { route: describeRoute(r) });
      for (const r of [...ch.removed, ...ch.removed6]) log.debug('route removed', { route: describeRoute(r) });
    },
    counters(): Record<string, number> {
      life.live('counters');
      return { ...dp.counters() };
    },
    stop: () => life.stop(),
  };
}
