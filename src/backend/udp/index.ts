/**
 * The udp backend: the TUN device `rudder0` and the native data plane, which
 * carries each IP packet in one UDP datagram to the PublicIP (on an IPv6
 * underlay the PublicIPv6) and port of the lease holding its destination. This file configures the kernel (the
 * device, the Network route and its fail-closed `unreachable` twin, stale
 * routes removed at start) and hands the data plane its peer table; the data
 * plane's threads move every packet. The design (ports, fail closed, pacing,
 * offloads, queues) is in docs/architecture.md, "udp".
 *
 * Runs on the daemon's event loop only; apply() calls are serial.
 */
import { RudderError, describeError } from '../../errors';
import { formatCidr, formatIp } from '../../ip/ipv4';
import { formatCidr6 } from '../../ip/ipv6';
import type { Logger } from '../../log';
import type { DataPlane, DataPlaneCounters, DataPlaneOptions, UnderlayFamily } from '../../dataplane/types';
import { openDataPlane as openNativeDataPlane } from '../../dataplane/native';
import { formatLeaseKey, hasIpv4, type Lease, type LeaseEvent } from '../../subnet/lease';
import { openNetlink as openRealNetlink, type Netlink } from '../../netlink';
import type { Backend, BackendContext, Network } from '../types';
import { StartGuard, UDP_TUN, defaultEvery, removeForeignDevices } from '../common';
import { logIgnored } from '../peers';
import { ensureTunNetwork, underlayOf } from '../tun-network';
import { DEFAULT_UDP_PORT, UdpPeerTable, describeRoute } from './table';
import { SwapPacer, type PacerClock, type PacerOptions } from './pacer';
import { OFFLOADS_ENV, busyPollFromEnv, offloadsFromEnv, queuesFromEnv } from './env';

export { DEFAULT_UDP_PORT, UdpPeerTable, peerAddress, peerPort } from './table';
export { SwapPacer, DEFAULT_PACER, type PacerClock, type PacerOptions } from './pacer';
export { BUSY_POLL_ENV, OFFLOADS_ENV, QUEUES_ENV, busyPollFromEnv, offloadsFromEnv, queuesFromEnv } from './env';

/** Outer IPv4 (20) + UDP (8); on an IPv6 underlay the outer header is 40 (UDP_OVERHEAD_V6). */
export const UDP_OVERHEAD = 28;
export const UDP_OVERHEAD_V6 = 48;
export const TUN_NAME = UDP_TUN;
export const STATS_INTERVAL_MS = 10_000;

export { FALLBACK_METRIC } from '../tun-network';

export interface UdpDeps {
  openDataPlane?: (opts: DataPlaneOptions) => DataPlane;
  openNetlink?: () => Netlink;
  /** Runs `fn` every `ms`; returns a cancel function. Default: an unref'd setInterval. */
  every?: (ms: number, fn: () => void) => () => void;
  /** Where RUDDER_UDP_OFFLOADS is read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Clock and timer of the table-swap pacing (default performance.now and setTimeout). */
  clock?: PacerClock;
  pacer?: PacerOptions;
}

const realClock: PacerClock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** The native data plane; its module loads the addon on first use, so unit tests and other backends never need it. */
function nativeOpenDataPlane(opts: DataPlaneOptions): DataPlane {
  return openNativeDataPlane(opts);
}



export function createUdpBackend(ctx: BackendContext, deps: UdpDeps = {}): Backend {
  const log = ctx.log.child({ backend: 'udp' });
  const networkPort = ctx.config.backend.Port ?? DEFAULT_UDP_PORT;
  const port = ctx.portFlag ?? networkPort;
  // One underlay family per host (underlayOf); asked at start, so a host without either fails there, named.
  const underlay = (): UnderlayFamily => underlayOf('udp', ctx.extIface);
  const overhead = ctx.extIface.publicIP === 0 ? UDP_OVERHEAD_V6 : UDP_OVERHEAD;
  const mtu = ctx.extIface.mtu - overhead;
  const openDataPlane = deps.openDataPlane ?? nativeOpenDataPlane;
  const openNetlink = deps.openNetlink ?? openRealNetlink;
  const every = deps.every ?? defaultEvery;
  const env = deps.env ?? process.env;
  const clock = deps.clock ?? realClock;
  const pacing = deps.pacer ?? {};

  return {
    type: 'udp',
    overhead,
    carriesIPv6: true,

    async prepare(): Promise<Record<string, unknown>> {
      return port === networkPort ? {} : { Port: port };
    },

    async start(own: Lease, signal: AbortSignal): Promise<Network> {
      const family = underlay();
      if (mtu < 68) {
        throw new RudderError('E_BACKEND', `udp: underlay ${ctx.extIface.name} MTU ${ctx.extIface.mtu} leaves ${mtu} after ${overhead} bytes of encapsulation: expected at least 68`);
      }
      const offloads = offloadsFromEnv(env);
      const busyPoll = busyPollFromEnv(env);
      const queues = queuesFromEnv(env);
      const start = new StartGuard('udp', signal);
      const network = ctx.config.network;
      // IPv6 (dual-stack or IPv6-only): this host's IPv6 subnet and the IPv6Network, beside the IPv4 pair.
      const own6 = ctx.config.ipv6 !== undefined ? own.ipv6Subnet : undefined;
      const network6 = own6 !== undefined ? ctx.config.ipv6?.network : undefined;
      // IPv6-only (no IPv4 subnet): no IPv4 packet is local, none gets an ICMP error.
      const v4 = hasIpv4(own);
      let dp: DataPlane | undefined;
      try {
        start.check('opening netlink');
        const nl = openNetlink();
        start.undo('close netlink', () => nl.close());
        // Runs after the data plane stopped: only a TUN it failed to remove is left.
        start.undo(`remove left-over ${TUN_NAME}`, async () => {
          const l = await nl.linkByName(TUN_NAME);
          if (l !== null) await nl.deleteLink(l.index);
        });

        start.check('removing other backends\' devices');
        await removeForeignDevices(nl, TUN_NAME, log);

        start.check('opening the data plane');
        const opened = openDataPlane({
          tunName: TUN_NAME,
          bindAddress: family === 'ipv4' ? ctx.extIface.address : 0,
          ...(family === 'ipv6' ? { underlay: family } : {}),
          port,
          localSubnet: v4 ? { ip: own.subnet.ip, prefix: own.subnet.prefix } : { ip: 0, prefix: 32 },
          icmpSource: v4 ? own.subnet.ip : 0,
          ...(own6 !== undefined ? { localSubnet6: own6, icmpSource6: own6.ip } : {}),
          mtu,
          offloads,
          busyPoll,
          queues,
        });
        dp = opened;
        start.undo('stop data plane', () => opened.stop());

        await ensureTunNetwork(nl, start, log, {
          backend: 'udp',
          dev: TUN_NAME,
          own: own.subnet,
          mtu,
          network,
          ...(own6 !== undefined && network6 !== undefined ? { own6, network6 } : {}),
        });
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
      logOffloads(log, dp, offloads);
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
  let stopping: Promise<void> | undefined;
  let last: DataPlaneCounters | undefined;

  const summary = (): void => {
    try {
      const c = dp.counters();
      if (last !== undefined && JSON.stringify(c) === JSON.stringify(last)) return;
      last = { ...c };
      log.debug('data plane counters', { ...c });
    } catch (e) {
      log.warn('udp: reading data plane counters failed', { error: describeError(e) });
    }
  };
  const cancelSummary = log.verbosity >= 1 ? every(STATS_INTERVAL_MS, summary) : () => undefined;

  return {
    mtu,
    async apply(events: readonly LeaseEvent[]): Promise<void> {
      if (stopping !== undefined) throw new RudderError('E_BACKEND', 'udp: apply after stop');
      const ch = table.apply(events);
      logIgnored(log, ch.ignored);
      for (const { lease, why } of ch.invalid) log.warn('udp: lease has no route this host can use', { key: formatLeaseKey(lease), why });
      if (ch.set.length === 0 && ch.removed.length === 0 && ch.set6.length === 0 && ch.removed6.length === 0) return;
      await pacer.request();
      for (const r of [...ch.set, ...ch.set6]) log.debug('route set', { route: describeRoute(r) });
      for (const r of [...ch.removed, ...ch.removed6]) log.debug('route removed', { route: describeRoute(r) });
    },
    counters(): Record<string, number> {
      if (stopping !== undefined) throw new RudderError('E_BACKEND', 'udp: counters after stop');
      return { ...dp.counters() };
    },
    stop(): Promise<void> {
      stopping ??= (async () => {
        cancelSummary();
        pacer.cancel(new RudderError('E_BACKEND', 'udp: stopped before the route table was handed to the data plane'));
        const errors = await start.unwind(log);
        if (errors.length > 0) {
          throw new RudderError('E_BACKEND', `udp: stop left ${errors.length} step(s) undone: ${describeError(errors[0])}`, { cause: errors[0] });
        }
        log.info('udp backend stopped');
      })();
      return stopping;
    },
  };
}
