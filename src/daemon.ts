/**
 * The daemon's wiring and lifecycle. It depends only on the seams: the
 * SubnetSource (etcd or Kubernetes: config, own lease, peers),
 * Backend/Network, the interface resolver and the readiness notifier. One AbortSignal runs through every long-running task; shutdown
 * undoes setup in reverse. The lease itself stays in etcd (or on the Node) on
 * shutdown, so a restart gets the same subnet.
 *
 *   metrics endpoint → config (wait until valid) → interface → backend.prepare
 *   → acquire lease → backend.start → ip-masq rules → subnet file → READY=1
 *   → watch leases + keep lease
 *
 * Metrics: the daemon owns one Telemetry (plain counters, src/metrics/
 * telemetry.ts) that the manager and watcher report to, and answers
 * snapshot() at scrape time; prom-client is loaded only with -metrics-addr.
 * A source with metrics of its own (Kubernetes) takes the failures the
 * etcd source reports as rudder_etcd_*, and adds its families.
 */
import type { Backend, BackendContext, ExternalInterface, Network, PeerStatus } from './backend/types';
import { NetworkConfig, configToJson, ipv4Enabled, parseConfig } from './config';
import { RudderError, describeError, isRudderError } from './errors';
import { formatCidr, formatIp } from './ip/ipv4';
import { formatCidr6, formatIp6 } from './ip/ipv6';
import type { Logger } from './log';
import { IpMasq, removeLeftoverTable, type NftRunner } from './ipmasq';
import { Telemetry, type DaemonSnapshot, type EtcdStats } from './metrics/telemetry';
import { type Lease, type LeaseEvent, NO_IPV4, hasIpv4, leaseName, sameKey } from './subnet/lease';
import { backoffMs } from './util/backoff';
import type { LeaseKeeper, SubnetSource } from './subnet/source';
import { type RememberedSubnets, readRememberedSubnets, subnetFileOf, writeSubnetFile } from './subnet/file';
import { resolveHostId } from './subnet/host-id';
import { LeaseWatcher } from './subnet/watcher';
import { sleep } from './util/sleep';

/** This many lease events (a re-list, churn) since the last full collection: worth another. */
const COMPACT_AFTER_EVENTS = 256;
let compactTimer: NodeJS.Timeout | null = null;

/**
 * After a burst (thousands of leases listed, decoded and programmed), V8
 * keeps the heap it grew to for a long time; one full, compacting
 * collection a second later gives the pages back (RSS at 5,000 peers).
 * Only when the launcher exposes gc (bin/rudder runs node --expose-gc).
 */
function compactSoon(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function' || compactTimer !== null) return;
  compactTimer = setTimeout(() => {
    compactTimer = null;
    gc();
  }, 1000);
  compactTimer.unref();
}

export interface DaemonOptions {
  subnetFile: string;
  ttlMs: number;
  renewMarginMs: number;
  ipMasq: boolean;
  portFlag: number | undefined;
  /** -wireguard-key-file (the wireguard backend's default when absent). */
  wireguardKeyFile?: string | undefined;
  /** IP:PORT for /metrics, /healthz, /readyz; undefined = off. */
  metricsAddr?: string | undefined;
  /** -host-id; undefined: the host-id file beside the subnet file (src/subnet/host-id.ts). */
  hostId?: string | undefined;
  /** flanneld's subnet file, remembered when Rudder's is absent (migration in place); undefined = off. */
  flannelSubnetFile?: string | undefined;
}

export interface DaemonDeps {
  /** Config, own lease and peers: etcdSource(registry, prefix) or the Kubernetes source. */
  source: SubnetSource;
  log: Logger;
  /** The underlay interface; `ipv4: false` (an IPv6-only network) lets it have no IPv4 address. */
  resolveIface(opts?: { readonly ipv4: boolean }): Promise<ExternalInterface>;
  /** EnableIPv6: this host's PublicIPv6 (-public-ipv6, else the global IPv6 of the interface); E_IFACE when none. */
  resolvePublicIpv6?(ext: ExternalInterface): bigint;
  createBackend(ctx: BackendContext): Backend;
  /** sd_notify; a no-op when not under systemd. */
  notify(state: string): void;
  /**
   * nftables access (the `nft` command, runNft). -ip-masq uses runNft when
   * absent; without -ip-masq a table left by an earlier run is removed only
   * when given (so tests of the daemon never touch the machine's nftables).
   */
  nft?: NftRunner;
}

/** Daemon states, for logs, `/readyz` and tests. */
export type DaemonState = 'waiting-config' | 'acquiring' | 'programming' | 'ready' | 'stopping' | 'stopped';

export class Daemon {
  state: DaemonState = 'waiting-config';
  lease: Lease | null = null;
  network: Network | null = null;
  config: NetworkConfig | null = null;
  readonly telemetry = new Telemetry();
  /** The bound metrics address (IP:PORT) once serving. */
  metricsAddress: string | null = null;
  private manager: LeaseKeeper | null = null;
  private watcher: LeaseWatcher | null = null;
  private ipMasq: IpMasq | null = null;
  private backendType: string | null = null;

  constructor(private readonly o: DaemonOptions, private readonly d: DaemonDeps) {}

  /** Where the watcher, keeper and config wait count failures: the source's own metrics, else etcd's. */
  private get sourceStats(): EtcdStats {
    return this.d.source.metrics?.stats ?? this.telemetry;
  }

  /**
   * Runs until `signal` aborts (resolves) or the lease is irrecoverably lost
   * (rejects). Transient etcd trouble is retried, never fatal.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.d;
    const registry = this.d.source.peers;
    const undo: Array<() => Promise<void>> = [];
    try {
      if (this.o.metricsAddr !== undefined) {
        const server = await this.serveMetrics(this.o.metricsAddr);
        undo.push(() => server.close());
      }
      const config = await this.waitForConfig(signal);
      if (!config) return;
      this.config = config;

      // udp and wireguard carry both families over an IPv6 underlay: with EnableIPv6 their host may lack IPv4.
      const ipv6Underlay = Boolean(config.ipv6) && (config.backend.Type === 'udp' || config.backend.Type === 'wireguard');
      let ext = await this.d.resolveIface({ ipv4: ipv4Enabled(config) && !ipv6Underlay });
      log.info('using interface', { iface: ext.name, address: formatIp(ext.address), publicIP: formatIp(ext.publicIP), mtu: ext.mtu });

      let publicIPv6: bigint | null = null;
      if (config.ipv6) {
        if (!this.d.resolvePublicIpv6) throw new RudderError('E_IFACE', `EnableIPv6 is on but this daemon cannot find an IPv6 address for interface ${ext.name}`);
        publicIPv6 = this.d.resolvePublicIpv6(ext);
        ext = { ...ext, publicIPv6 };
        log.info('using IPv6', { iface: ext.name, publicIPv6: formatIp6(publicIPv6) });
      }

      const backend = this.d.createBackend({
        config,
        extIface: ext,
        log: log.child({ backend: config.backend.Type }),
        portFlag: this.o.portFlag,
        wireguardKeyFile: this.o.wireguardKeyFile,
        publish: (data) => {
          if (!this.manager) throw new RudderError('E_INTERNAL', 'lease republished before it was acquired');
          // A backend without BackendV6Data of its own publishes BackendData in both (wireguard's key).
          this.manager.setBackendData(data, backend.backendV6Data === undefined ? data : undefined);
        },
      });
      if ((config.ipv6 || !ipv4Enabled(config)) && backend.carriesIPv6 !== true) {
        // Never pretend: a lease with an IPv6 subnet that no route carries would black-hole its pods.
        throw new RudderError('E_BACKEND', `IPv6 is not yet carried by the ${backend.type} backend: EnableIPv6 (and IPv6-only) networks need a backend that routes IPv6; set "EnableIPv6": false in the network config`);
      }
      const backendData = await backend.prepare(signal);
      this.backendType = backend.type;

      this.state = 'acquiring';
      const host = await resolveHostId({ override: this.o.hostId, subnetFile: this.o.subnetFile });
      log.info('host identity', { hostId: host.id, source: host.source, ...(host.file ? { file: host.file } : {}) });
      const manager = this.d.source.keeper({
        config,
        publicIP: ext.publicIP,
        ...(config.ipv6 ? { publicIPv6, backendV6Data: backend.backendV6Data ?? backendData } : {}),
        backendType: backend.type,
        backendData,
        hostId: host.id,
        ttlMs: this.o.ttlMs,
        renewMarginMs: this.o.renewMarginMs,
        log,
        stats: this.sourceStats,
      });
      this.manager = manager;
      const remembered = await this.rememberedSubnet();
      const lease = await this.retrying('acquire a lease', signal, () => manager.acquire(remembered?.subnet ?? null, remembered?.ipv6Subnet ?? null));
      if (!lease) return;
      this.lease = lease;

      this.state = 'programming';
      // The others' leases as of now: a restarted daemon keeps the kernel state that still matches them.
      const current = await this.retrying('list leases', signal, () => registry.listLeases());
      if (!current) return;
      // An IPv6-only lease (IPv4 part 0.0.0.0/0) must never reach a backend that routes IPv4 only.
      const usable = (l: Lease): boolean => backend.carriesIPv6 === true || hasIpv4(l) || l.ipv6Subnet === undefined;
      const peers = current.records.map((r) => r.lease).filter((l) => !sameKey(l, lease) && usable(l));
      const network = await backend.start(lease, signal, peers);
      this.network = network;
      compactSoon();
      undo.push(() => {
        this.network = null; // no counters read from a stopping data plane
        return network.stop();
      });

      if (this.o.ipMasq) {
        const ipv6 = config.ipv6 && lease.ipv6Subnet ? { network: config.ipv6.network, subnet: lease.ipv6Subnet } : undefined;
        const masq = new IpMasq({
          params: ipv4Enabled(config) ? { network: config.network, subnet: lease.subnet, ipv6 } : { ipv6 },
          log,
          ...(this.d.nft ? { nft: this.d.nft } : {}),
          onRestore: () => this.telemetry.ipMasqRestores++,
        });
        await masq.start();
        this.ipMasq = masq;
        undo.push(() => masq.stop());
      } else if (this.d.nft) {
        await removeLeftoverTable(log, this.d.nft);
      }

      await writeSubnetFile(this.o.subnetFile, subnetFileOf(config, lease, network.mtu, this.o.ipMasq));
      log.info('subnet file written', { file: this.o.subnetFile, subnet: config.ipv6 ? leaseName(lease) : formatCidr(lease.subnet), mtu: network.mtu });

      // Own-lease events go to the manager; everyone else's to the backend.
      let eventsSinceCompact = 0;
      const watcher = new LeaseWatcher(registry, log, async (events) => {
        const peers: LeaseEvent[] = [];
        for (const e of events) {
          this.telemetry.leaseEvent(e.type);
          if (sameKey(e.lease, lease)) manager.ownKeyChanged(e.type === 'added' ? e.lease : null);
          else if (usable(e.lease)) peers.push(e);
          if (e.type === 'added' && e.lease.publicIP === lease.publicIP && lease.publicIP !== 0 && !sameKey(e.lease, lease)) {
            // Started at the same moment as we did (the acquisition check cannot see it), or a flanneld.
            log.error('another lease names this host\'s PublicIP: two hosts share one address; give one of them its own -public-ip', {
              subnet: formatCidr(e.lease.subnet),
              publicIP: formatIp(e.lease.publicIP),
              hostId: e.lease.hostId ?? 'none',
            });
          }
        }
        for (const e of peers) log.info(e.type === 'added' ? 'peer lease added' : 'peer lease removed', { subnet: leaseName(e.lease), publicIP: formatIp(e.lease.publicIP), backend: e.lease.backendType });
        if (peers.length) await network.apply(peers);
        eventsSinceCompact += events.length;
        if (eventsSinceCompact >= COMPACT_AFTER_EVENTS) {
          eventsSinceCompact = 0;
          compactSoon();
        }
      }, this.sourceStats);
      this.watcher = watcher;

      const inner = new AbortController();
      const onAbort = (): void => inner.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      // The list the backend started from: no second list, and the watch resumes right after it.
      const watching = watcher.run(inner.signal, current);
      const configWatch = this.watchConfigChanges(config, inner.signal);

      this.state = 'ready';
      this.d.notify(`READY=1\nSTATUS=subnet ${leaseName(lease)}`);
      log.info('ready', { subnet: leaseName(lease), backend: backend.type });

      try {
        await manager.keep(inner.signal);
      } finally {
        inner.abort();
        signal.removeEventListener('abort', onAbort);
        await watching;
        await configWatch;
        await watcher.settled();
      }
    } finally {
      this.state = 'stopping';
      this.d.notify('STOPPING=1');
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch (e) {
          log.error('shutdown step failed', { error: describeError(e) });
        }
      }
      registry.close();
      this.state = 'stopped';
    }
  }

  /**
   * The subnet of an earlier run: Rudder's subnet file, else flanneld's
   * (a flannel host switched to Rudder in place keeps its subnet even when
   * flanneld's lease is gone).
   */
  private async rememberedSubnet(): Promise<RememberedSubnets | null> {
    const { log } = this.d;
    const invalid = (file: string) => (e: unknown): void => log.warn('subnet file is not valid; not remembering it', { file, error: describeError(e) });
    const own = await readRememberedSubnets(this.o.subnetFile, invalid(this.o.subnetFile));
    if (own !== null || this.o.flannelSubnetFile === undefined) return own;
    const flannel = await readRememberedSubnets(this.o.flannelSubnetFile, invalid(this.o.flannelSubnetFile), 'flannel');
    if (flannel !== null) log.info("remembering flanneld's subnet", { file: this.o.flannelSubnetFile, subnet: leaseName({ subnet: flannel.subnet ?? NO_IPV4, ipv6Subnet: flannel.ipv6Subnet ?? undefined }) });
    return flannel;
  }

  /**
   * Rotates this host's key (SIGHUP, and `rudder wireguard rotate-key` by
   * way of the backend's control socket): the new public key. Throws
   * E_BACKEND when the running backend has no key (or is not running yet).
   */
  async rotateKey(): Promise<string> {
    const n = this.network;
    if (n?.rotateKey === undefined) {
      throw new RudderError('E_BACKEND', this.backendType === 'wireguard' || n === null ? 'no key to rotate yet: the backend is not running' : `the ${this.backendType ?? 'current'} backend has no key to rotate`);
    }
    return n.rotateKey();
  }

  /** What the daemon is doing now, for the metrics endpoint (read at scrape time). */
  snapshot(): DaemonSnapshot {
    const own = this.lease;
    let lease: DaemonSnapshot['lease'] = null;
    if (own && this.manager) {
      const l = this.manager.lease;
      lease = {
        subnet: hasIpv4(l) ? formatCidr(l.subnet) : null,
        ...(l.ipv6Subnet !== undefined ? { ipv6Subnet: formatCidr6(l.ipv6Subnet) } : {}),
        expiresAt: l.expiresAt,
        reservation: this.manager.isReservation,
      };
    }
    let peers = 0;
    const peerSubnets = { ipv4: 0, ipv6: 0 };
    for (const l of this.watcher?.known.values() ?? []) {
      if (own && sameKey(l, own)) continue;
      peers++;
      if (hasIpv4(l)) peerSubnets.ipv4++;
      if (l.ipv6Subnet !== undefined) peerSubnets.ipv6++;
    }
    let dataplane: Record<string, number> | null = null;
    let peerStatus: readonly PeerStatus[] | null = null;
    try {
      dataplane = this.network?.counters?.() ?? null;
    } catch {
      dataplane = null; // stopping
    }
    try {
      peerStatus = this.network?.peerStatus?.() ?? null;
    } catch {
      peerStatus = null; // stopping
    }
    return {
      state: this.state,
      lease,
      backend: this.backendType,
      peers,
      peerSubnets,
      dataplane,
      peerStatus,
      ipMasq: this.o.ipMasq ? (this.ipMasq?.active ?? false) : null,
    };
  }

  /** Starts the -metrics-addr endpoint; prom-client is loaded only here. */
  private async serveMetrics(addr: string): Promise<{ close(): Promise<void> }> {
    const [{ createMetrics }, { startMetricsServer }] = await Promise.all([import('./metrics/prometheus'), import('./metrics/server')]);
    const metrics = createMetrics(this.telemetry, () => this.snapshot());
    await this.d.source.metrics?.register(metrics.registry);
    const server = await startMetricsServer({
      addr,
      metrics,
      state: () => this.state,
      log: this.d.log,
    });
    this.metricsAddress = server.address;
    return server;
  }

  /** Retries `fn` through etcd outages and a full range; null if aborted. */
  private async retrying<T>(what: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T | null> {
    for (let failures = 1; !signal.aborted; failures++) {
      try {
        return await fn();
      } catch (e) {
        if (isRudderError(e, 'E_SUBNET_FULL')) {
          this.d.log.error(describeError(e) + '; retrying in 30 s');
          await sleep(30_000, signal);
        } else if (isRudderError(e, 'E_PUBLIC_IP_CONFLICT')) {
          // Perhaps a clone whose twin goes away: keep trying, loudly, touching nothing.
          this.d.log.error(describeError(e) + ' in 10 s');
          await sleep(10_000, signal);
        } else if (isRudderError(e, 'E_ETCD') || isRudderError(e, 'E_KUBE') || isRudderError(e, 'E_ACQUIRE')) {
          if (isRudderError(e, 'E_ETCD') || isRudderError(e, 'E_KUBE')) this.sourceStats.etcdError('lease');
          this.d.log.warn(`cannot ${what} yet; retrying`, { error: describeError(e), attempt: failures });
          await sleep(backoffMs(failures), signal);
        } else throw e;
      }
    }
    return null;
  }

  /** Reads the config until it exists and is valid; watches the key meanwhile. */
  private async waitForConfig(signal: AbortSignal): Promise<NetworkConfig | null> {
    const { log } = this.d;
    const { peers: registry, configWhere: key, configHint } = this.d.source;
    let lastMsg = '';
    for (let failures = 0; !signal.aborted; ) {
      let changed: () => void = () => undefined;
      const wake = new Promise<void>((r) => (changed = r));
      let stopWatch: (() => void) | null = null;
      try {
        stopWatch = await registry.watchConfig(() => changed(), () => changed());
        const text = await registry.getConfig();
        if (failures > 0) this.sourceStats.etcdReconnected('config');
        failures = 0;
        if (text === null) {
          if (lastMsg !== 'missing') log.warn('waiting for the network config', { key, hint: configHint });
          lastMsg = 'missing';
        } else {
          try {
            const cfg = parseConfig(text);
            log.info('network config', configToJson(cfg));
            return cfg;
          } catch (e) {
            const m = describeError(e);
            if (m !== lastMsg) log.error(`invalid network config at ${key}; waiting for a fixed one`, { error: m });
            lastMsg = m;
          }
        }
        // Re-read on change, and every 30 s in case a watch event was lost.
        await Promise.race([wake, sleep(30_000, signal)]);
      } catch (e) {
        failures++;
        this.sourceStats.etcdError('config');
        log.warn(`cannot read the network config at ${key}; retrying`, { error: describeError(e), attempt: failures });
        await sleep(backoffMs(failures), signal);
      } finally {
        stopWatch?.();
      }
    }
    return null;
  }

  /** The running network does not change under a live daemon: say so when the config does. */
  private async watchConfigChanges(running: NetworkConfig, signal: AbortSignal): Promise<void> {
    const same = JSON.stringify(configToJson(running));
    let stop: (() => void) | null = null;
    const onText = (text: string | null): void => {
      let now = '';
      try {
        now = text === null ? 'deleted' : JSON.stringify(configToJson(parseConfig(text)));
      } catch (e) {
        now = describeError(e);
      }
      if (now !== same) this.d.log.warn(`network config changed at ${this.d.source.configWhere}; restart rudder to apply it`, { now });
    };
    while (!signal.aborted) {
      const broken = new Promise<void>((resolve) => {
        this.d.source.peers.watchConfig(onText, () => resolve()).then((s) => (stop = s), () => resolve());
      });
      await Promise.race([broken, sleep(3_600_000, signal)]);
      (stop as (() => void) | null)?.();
      await sleep(5_000, signal);
    }
  }
}
