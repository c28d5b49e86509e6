/**
 * Kubernetes mode's SubnetSource: the network config is a file (the
 * ConfigMap's net-conf.json), this host's subnets are its Node's
 * spec.podCIDRs (IPv4, IPv6 or both, as the config's families say), and
 * the peers are the other Nodes, read from their annotations. No etcd.
 *
 * Peers: list the Nodes, then watch from the list's resourceVersion. The
 * LeaseWatcher drives it exactly as it drives etcd (revision + 1 in, the
 * same resourceVersion out: Kubernetes' resourceVersion is the etcd
 * revision, a decimal number), and on a broken watch or `410 Gone` it lists
 * again and diffs, so the backend sees exactly the changes. A Node's entry is
 * keyed by its subnets; `byName` maps a Node to the subnets it was last seen
 * with, so a deleted Node (or one whose annotations went away) is a removal.
 * Which families a Node is read for follows the config the keeper is made
 * for (the daemon makes the keeper before it lists).
 *
 * Own lease (KubeKeeper): wait until the Node has a podCIDR inside Network
 * (and, with EnableIPv6, an IPv6 one inside IPv6Network), PATCH the
 * annotations that differ (public IP — `public-ip-overwrite` wins as in
 * flannel —, backend type and data; public-ipv6 — `public-ipv6-overwrite`
 * wins — and backend-v6-data with EnableIPv6), then, once the daemon is ready, set
 * NetworkUnavailable=False through nodes/status. API trouble never touches
 * the data path: it is logged and retried with backoff, and counted in
 * KubeStats (rudder_kube_* metrics, src/metrics/kube.ts), not in etcd's.
 */
import * as fs from 'node:fs';
import { RudderError, describeError } from '../../errors';
import { ipv4Enabled, type NetworkConfig } from '../../config';
import { Cidr, cidrEquals, containsCidr, formatCidr, formatIp } from '../../ip/ipv4';
import { Cidr6, cidr6Equals, containsCidr6, formatCidr6, formatIp6 } from '../../ip/ipv6';
import type { Logger } from '../../log';
import { noStats } from '../../metrics/telemetry';
import { backoffMs } from '../../util/backoff';
import { Wakeable } from '../../util/sleep';
import { NO_IPV4, leaseName, sameAttrs, sameKey, type Lease, type LeaseSubnets } from '../lease';
import type { LeaseList, LeaseRecord, PeerSource, WatchBatch, WatchHandlers } from '../registry';
import type { KeeperOptions, LeaseKeeper, SubnetSource } from '../source';
import { KubeStats } from './stats';
import { KubeApiError, KubeClient, WatchEnded, inClusterConnection, readKubeconfig, type KubeConnection, type WatchEvent } from './client';
import { IPV4_ONLY, PRESENT_FAMILIES, annotationsToPatch, networkAvailablePatch, nodeLease, nodeSubnets, ownAnnotations, ownPublicIP, ownPublicIPv6, readNode, type KubeNode, type NodeFamilies } from './node';

export interface KubeSourceOptions {
  kubeconfigFile?: string | undefined;
  apiUrl?: string | undefined;
  annotationPrefix: string;
  netConfigPath: string;
  nodeName: string;
  log: Logger;
  env?: Readonly<Record<string, string | undefined>>;
}

/** Connection settings from -kubeconfig-file (else in-cluster), with -kube-api-url winning. */
export function kubeConnection(o: Pick<KubeSourceOptions, 'kubeconfigFile' | 'apiUrl' | 'env'>): KubeConnection {
  const env = o.env ?? process.env;
  const apiUrl = o.apiUrl?.replace(/\/$/, '');
  // -kube-api-url alone (no kubeconfig, not in a pod): an API server that needs no credentials, as flannel allows.
  if (o.kubeconfigFile === undefined && apiUrl !== undefined && !env.KUBERNETES_SERVICE_HOST) {
    return { server: apiUrl, insecureSkipTlsVerify: false, origin: `-kube-api-url ${apiUrl}` };
  }
  const conn = o.kubeconfigFile !== undefined ? readKubeconfig(o.kubeconfigFile) : inClusterConnection(env);
  if (apiUrl !== undefined) conn.server = apiUrl;
  return conn;
}

export function kubeSource(o: KubeSourceOptions): SubnetSource {
  const conn = kubeConnection(o);
  o.log.info('Kubernetes API server', { server: conn.server, settings: conn.origin, annotationPrefix: o.annotationPrefix });
  const stats = new KubeStats();
  const client = new KubeClient(conn, { stats, ...(o.env ? { env: o.env } : {}) });
  // RUDDER_KUBE_WATCH_TIMEOUT (seconds) fixes the watch's timeoutSeconds; for tests that need the server to end watches soon.
  const fixed = Number((o.env ?? process.env).RUDDER_KUBE_WATCH_TIMEOUT ?? '');
  const peers = new KubePeers(client, o.annotationPrefix, o.netConfigPath, o.nodeName, Number.isInteger(fixed) && fixed > 0 ? fixed : null, stats);
  return {
    peers,
    metrics: {
      stats,
      async register(registry) {
        const { registerKubeMetrics } = await import('../../metrics/kube');
        registerKubeMetrics(registry, stats);
      },
    },
    configWhere: o.netConfigPath,
    configHint: `write the network config to ${o.netConfigPath} (in a cluster: the net-conf.json key of the ConfigMap in packaging/kubernetes/rudder.yaml)`,
    keeper: (k) => {
      peers.useConfig(k.config);
      return new KubeKeeper(k, client, o.annotationPrefix, o.nodeName);
    },
  };
}

const nodePath = (name: string): string => `/api/v1/nodes/${encodeURIComponent(name)}`;

/** The watch entry that removes a Node's last lease. */
const deleteOf = (k: LeaseSubnets): WatchBatch => ({ kind: 'delete', subnet: k.subnet, ...(k.ipv6Subnet !== undefined ? { ipv6Subnet: k.ipv6Subnet } : {}) });

export class KubePeers implements PeerSource {
  readonly storeName = 'Kubernetes API server';
  /** Node name → the subnets its last valid lease had. */
  private readonly byName = new Map<string, LeaseSubnets>();
  /** The families Nodes are read for (useConfig); IPv4 until a config says otherwise. */
  private families: NodeFamilies | typeof PRESENT_FAMILIES = IPV4_ONLY;

  constructor(
    readonly client: KubeClient,
    private readonly prefix: string,
    private readonly netConfigPath: string,
    private readonly ownName: string,
    /** The watch's timeoutSeconds; null: 300–600 s, drawn per watch. */
    private readonly watchTimeoutS: number | null = null,
    private readonly stats: KubeStats | null = null,
  ) {}

  /**
   * Reads Nodes for the families of this config from the next list on;
   * null: for the families each Node's podCIDRs have (a listing with no config).
   */
  useConfig(config: NetworkConfig | null): void {
    this.families = config === null ? PRESENT_FAMILIES : { v4: ipv4Enabled(config), v6: config.ipv6 !== undefined };
  }

  async getConfig(): Promise<string | null> {
    try {
      return await fs.promises.readFile(this.netConfigPath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new RudderError('E_CONFIG', `cannot read ${this.netConfigPath}`, { cause: e });
    }
  }

  /** Polls the file (a ConfigMap volume swaps a symlink, which inotify on the path misses). */
  async watchConfig(onChange: (text: string | null) => void): Promise<() => void> {
    const listener = (cur: fs.Stats, prev: fs.Stats): void => {
      if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
      this.getConfig().then(onChange, () => onChange(null));
    };
    fs.watchFile(this.netConfigPath, { interval: 2000, persistent: false }, listener);
    return () => fs.unwatchFile(this.netConfigPath, listener);
  }

  /** One Node as a watch entry; also keeps byName. Own Node without annotations yet is not reported. */
  private entry(n: KubeNode, out: WatchBatch[], invalid: { key: string; reason: string }[] | null): LeaseRecord | null {
    const r = nodeLease(n, this.prefix, this.families);
    const old = this.byName.get(n.name);
    if ('error' in r) {
      if (old) {
        out.push(deleteOf(old));
        this.byName.delete(n.name);
      }
      if (n.name !== this.ownName) {
        const e = { key: `Node ${n.name}`, reason: r.error };
        if (invalid) invalid.push(e);
        else out.push({ kind: 'invalid', ...e });
      }
      return null;
    }
    if (old && !sameKey(old, r.lease)) out.push(deleteOf(old));
    this.byName.set(n.name, { subnet: r.lease.subnet, ipv6Subnet: r.lease.ipv6Subnet });
    const rec: LeaseRecord = { lease: r.lease, modRevision: n.resourceVersion, etcdLeaseId: '0' };
    out.push({ kind: 'put', record: rec });
    return rec;
  }

  async listLeases(): Promise<LeaseList> {
    const list = await this.client.request<{ metadata?: { resourceVersion?: string }; items?: Record<string, unknown>[] }>('GET', '/api/v1/nodes');
    const rv = list.metadata?.resourceVersion ?? '';
    if (!/^\d+$/.test(rv)) throw new KubeApiError(`GET ${this.client.server}/api/v1/nodes: resourceVersion ${JSON.stringify(rv)} is not a number`, null);
    this.byName.clear();
    const records: LeaseRecord[] = [];
    const invalid: { key: string; reason: string }[] = [];
    const sink: WatchBatch[] = [];
    for (const item of list.items ?? []) {
      const rec = this.entry(readNode(item), sink, invalid);
      if (rec) records.push(rec);
    }
    return { records, revision: rv, invalid };
  }

  /**
   * Watches from the revision; a watch the server ends cleanly (its
   * timeoutSeconds) is reopened from the last resourceVersion seen, without
   * a re-list. Anything else — an error, `410 Gone`, a disconnect — is
   * reported as broken, and the watcher lists again.
   */
  async watchLeases(fromRevision: string, handlers: WatchHandlers): Promise<() => void> {
    let rv = (BigInt(fromRevision) - 1n).toString();
    let done = false;
    let current: { stop(): void } | null = null;
    const broken = (reason: unknown): void => {
      if (done) return;
      done = true;
      current?.stop();
      handlers.onBroken(reason);
    };
    const onEvent = (ev: WatchEvent): void => {
      if (done) return;
      const evRv = (ev.object as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion;
      if (ev.type === 'ERROR') {
        const st = ev.object as { code?: number; message?: string };
        const gone = st.code === 410;
        this.stats?.watchRestart(gone ? 'gone' : 'broken');
        broken(new KubeApiError(`watch of Nodes at ${this.client.server}: ${gone ? '410 Gone (the resourceVersion was compacted)' : `error ${String(st.code)}`}: ${st.message ?? ''}`, st.code ?? null));
        return;
      }
      if (typeof evRv === 'string' && evRv !== '') rv = evRv;
      if (ev.type === 'BOOKMARK') return;
      const n = readNode(ev.object);
      const batch: WatchBatch[] = [];
      if (ev.type === 'DELETED') {
        const old = this.byName.get(n.name);
        this.byName.delete(n.name);
        if (old) batch.push(deleteOf(old));
      } else this.entry(n, batch, null);
      if (batch.length) handlers.onEvents(batch);
    };
    const open = (): void => {
      // The server ends a watch after timeoutSeconds; spread them so nodes do not reconnect in step.
      const timeout = this.watchTimeoutS ?? 300 + Math.floor(Math.random() * 300);
      const startedAt = Date.now();
      const w = this.client.watch(`/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion=${rv}&timeoutSeconds=${timeout}`, onEvent);
      current = w;
      void w.ended.then((reason) => {
        if (done) return;
        if (reason instanceof WatchEnded && Date.now() - startedAt > 1000) {
          this.stats?.watchRestart('timeout');
          open();
        } else {
          this.stats?.watchRestart(reason instanceof KubeApiError && reason.status === 410 ? 'gone' : 'broken');
          broken(reason ?? new KubeApiError('watch of Nodes stopped', null));
        }
      });
    };
    open();
    return () => {
      done = true;
      current?.stop();
    };
  }

  close(): void {
    this.client.close();
  }
}

export class KubeKeeper implements LeaseKeeper {
  private current: Lease | null = null;
  private dirty = false;
  private readonly alarm = new Wakeable();
  /** What the annotations publish: the options' until setBackendData. */
  private backendData: Readonly<Record<string, unknown>>;
  private backendV6Data: Readonly<Record<string, unknown>> | undefined;

  constructor(
    private readonly o: KeeperOptions,
    private readonly client: KubeClient,
    private readonly prefix: string,
    private readonly nodeName: string,
  ) {
    this.backendData = o.backendData;
    this.backendV6Data = o.backendV6Data;
  }

  get lease(): Lease {
    if (!this.current) throw new RudderError('E_INTERNAL', 'no lease acquired yet');
    return this.current;
  }

  get isReservation(): boolean {
    return true;
  }

  private async getNode(): Promise<KubeNode> {
    try {
      return readNode(await this.client.request('GET', nodePath(this.nodeName)));
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) {
        throw new RudderError('E_ACQUIRE', `there is no Node ${JSON.stringify(this.nodeName)} at ${this.client.server}: NODE_NAME (else the hostname) must be this node's name in Kubernetes`, { cause: e });
      }
      throw e;
    }
  }

  /** The Node's subnets, or an E_ACQUIRE that says why there are none yet (the daemon retries). */
  private subnetsOf(n: KubeNode): LeaseSubnets {
    const config = this.o.config;
    const { v4, v6Cidr, bad, bad6 } = nodeSubnets(n);
    let subnet = NO_IPV4;
    if (ipv4Enabled(config)) {
      const network = config.network;
      if (!v4) {
        throw new RudderError(
          'E_ACQUIRE',
          bad !== null
            ? `Node ${n.name} has spec.podCIDR ${JSON.stringify(bad)}, not an IPv4 CIDR`
            : `Node ${n.name} has no spec.podCIDR yet: kube-controller-manager allocates one when run with --allocate-node-cidrs=true and --cluster-cidr=${formatCidr(network)}; waiting`,
        );
      }
      if (!containsCidr(network, v4)) {
        throw new RudderError('E_ACQUIRE', `Node ${n.name} has spec.podCIDR ${formatCidr(v4)}, outside the configured Network ${formatCidr(network)}: make --cluster-cidr of kube-controller-manager and Network of net-conf.json agree; waiting`);
      }
      subnet = v4;
    }
    const v6 = config.ipv6;
    if (v6 === undefined) return { subnet };
    if (!v6Cidr) {
      const clusterCidr = ipv4Enabled(config) ? `${formatCidr(config.network)},${formatCidr6(v6.network)}` : formatCidr6(v6.network);
      throw new RudderError(
        'E_ACQUIRE',
        bad6 !== null
          ? `Node ${n.name} has spec.podCIDRs entry ${JSON.stringify(bad6)}, not an IPv6 CIDR`
          : `Node ${n.name} has no IPv6 entry in spec.podCIDRs (${n.podCIDRs.length ? n.podCIDRs.join(',') : 'none'}), and EnableIPv6 needs one: ` +
              `run a ${ipv4Enabled(config) ? 'dual-stack' : 'IPv6-only'} cluster (kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=${clusterCidr}); waiting`,
      );
    }
    if (!containsCidr6(v6.network, v6Cidr)) {
      throw new RudderError('E_ACQUIRE', `Node ${n.name} has the IPv6 spec.podCIDRs entry ${formatCidr6(v6Cidr)}, outside the configured IPv6Network ${formatCidr6(v6.network)}: make --cluster-cidr of kube-controller-manager and IPv6Network of net-conf.json agree; waiting`);
    }
    return { subnet, ipv6Subnet: v6Cidr };
  }

  /** Patches the annotations that differ; returns the lease they describe. */
  private async publish(n: KubeNode, subnets: LeaseSubnets): Promise<Lease> {
    const { ip, overwritten } = ownPublicIP(n, this.prefix, this.o.publicIP);
    if (overwritten && ip !== this.o.publicIP) this.o.log.info('public IP from the node annotation', { annotation: `${this.prefix}/public-ip-overwrite`, publicIP: formatIp(ip) });
    let v6: { publicIPv6: bigint | null; backendV6Data: Readonly<Record<string, unknown>> } | undefined;
    if (this.o.config.ipv6) {
      const detected = this.o.publicIPv6 ?? null;
      const six = ownPublicIPv6(n, this.prefix, detected);
      if (six.overwritten && six.ip !== detected && six.ip !== null) this.o.log.info('public IPv6 from the node annotation', { annotation: `${this.prefix}/public-ipv6-overwrite`, publicIPv6: formatIp6(six.ip) });
      v6 = { publicIPv6: six.ip, backendV6Data: this.backendV6Data ?? {} };
    }
    const patch = annotationsToPatch(n, ownAnnotations(this.prefix, ip, this.o.backendType, this.backendData, v6));
    if (Object.keys(patch).length > 0) {
      await this.client.request('PATCH', nodePath(this.nodeName), { metadata: { annotations: patch } }, 'application/merge-patch+json');
      this.o.log.info('node annotations written', { node: this.nodeName, annotations: Object.keys(patch).join(',') });
    }
    return {
      ...subnets,
      publicIP: ip,
      ...(v6 && v6.publicIPv6 !== null ? { publicIPv6: v6.publicIPv6 } : {}),
      backendType: this.o.backendType,
      backendData: this.backendData,
      ...(v6 ? { backendV6Data: v6.backendV6Data } : {}),
      expiresAt: null,
    };
  }

  async acquire(remembered: Cidr | null, remembered6?: Cidr6 | null): Promise<Lease> {
    const n = await this.getNode();
    const subnets = this.subnetsOf(n);
    if (remembered && ipv4Enabled(this.o.config) && !cidrEquals(remembered, subnets.subnet)) {
      this.o.log.info('the Node has another subnet than the subnet file remembers; the Node wins', { remembered: formatCidr(remembered), podCIDR: formatCidr(subnets.subnet) });
    }
    if (remembered6 && subnets.ipv6Subnet && !cidr6Equals(remembered6, subnets.ipv6Subnet)) {
      this.o.log.info('the Node has another IPv6 subnet than the subnet file remembers; the Node wins', { remembered: formatCidr6(remembered6), podCIDR: formatCidr6(subnets.ipv6Subnet) });
    }
    this.current = await this.publish(n, subnets);
    this.o.log.info('lease acquired', { subnet: leaseName(subnets), publicIP: formatIp(this.current.publicIP), how: `Node ${this.nodeName} spec.podCIDR${subnets.ipv6Subnet ? 's' : ''}` });
    return this.current;
  }

  setBackendData(data: Readonly<Record<string, unknown>>, v6Data?: Readonly<Record<string, unknown>>): void {
    this.backendData = data;
    if (v6Data) this.backendV6Data = v6Data;
    this.dirty = true;
    this.alarm.wake();
  }

  ownKeyChanged(now: Lease | null): void {
    const l = this.current;
    if (l && now && sameAttrs(l, now)) return;
    this.dirty = true;
    this.alarm.wake();
  }

  async keep(signal: AbortSignal): Promise<void> {
    const log = this.o.log;
    const stats = this.o.stats ?? noStats;
    let statusDone = false;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (!statusDone) {
          await this.client.request('PATCH', `${nodePath(this.nodeName)}/status`, networkAvailablePatch(new Date()), 'application/strategic-merge-patch+json');
          statusDone = true;
          log.info('node condition NetworkUnavailable=False set', { node: this.nodeName, reason: 'RudderIsUp' });
        }
        if (this.dirty) {
          this.dirty = false;
          const n = await this.getNode();
          this.current = await this.publish(n, this.subnetsOf(n));
        }
        if (failures > 0) {
          log.info('Kubernetes API server reachable again', { server: this.client.server, after: `${failures} failed attempts` });
          stats.etcdReconnected('lease');
        }
        failures = 0;
      } catch (e) {
        failures++;
        stats.etcdError('lease');
        log.warn('cannot update this Node; the data path keeps running, retrying', { server: this.client.server, error: describeError(e), attempt: failures });
      }
      // Re-check the annotations now and then even without an event (someone may have edited them).
      const wait = failures > 0 ? backoffMs(failures) : this.dirty ? 0 : 300_000;
      if (wait > 0) await this.alarm.wait(wait, signal);
      if (failures === 0 && !this.dirty && !signal.aborted) this.dirty = true;
    }
  }

}

