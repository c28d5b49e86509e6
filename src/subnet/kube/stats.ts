/**
 * Kubernetes mode's own counters, plain numbers (src/metrics/kube.ts exports
 * them as rudder_kube_* when -metrics-addr is on): every API request by verb
 * and HTTP status, every restart of the Node watch by reason, and the
 * failures and recoveries that the lease watcher, the keeper and the config
 * wait report through the EtcdStats seam — which etcd mode exports as
 * rudder_etcd_*, and which must not count API-server trouble there.
 */
import type { EtcdComponent, EtcdStats } from '../../metrics/telemetry';

export type KubeVerb = 'get' | 'list' | 'watch' | 'patch' | 'other';

/**
 * Why the Node watch was opened again: `timeout` — the server ended it
 * (its timeoutSeconds), resumed without a list; `gone` — 410, the
 * resourceVersion was compacted, listed again; `broken` — any other error or
 * a lost connection, listed again.
 */
export type WatchRestartReason = 'timeout' | 'gone' | 'broken';

/** The verb of a request as the API server's audit log would name it. */
export function kubeVerb(method: string, p: string): KubeVerb {
  const [pathname = '', query = ''] = p.split('?', 2);
  const m = method.toUpperCase();
  if (m === 'PATCH') return 'patch';
  if (m !== 'GET') return 'other';
  if (/(^|&)watch=(true|1)(&|$)/.test(query)) return 'watch';
  // /api/v1/nodes (a collection) vs /api/v1/nodes/NAME; /apis/GROUP/VERSION/... the same after the version.
  const segs = pathname.split('/').filter((s) => s !== '');
  const rest = segs[0] === 'api' ? segs.slice(2) : segs[0] === 'apis' ? segs.slice(3) : segs;
  const inNamespace = rest[0] === 'namespaces' && rest.length > 2 ? rest.slice(2) : rest;
  return inNamespace.length % 2 === 1 ? 'list' : 'get';
}

export class KubeStats implements EtcdStats {
  /** `${verb} ${code}` → requests; code is the HTTP status, or `none` when the server did not answer. */
  readonly requests = new Map<string, number>();
  readonly watchRestarts: Record<WatchRestartReason, number> = { timeout: 0, gone: 0, broken: 0 };
  readonly errors: Record<EtcdComponent, number> = { config: 0, lease: 0, watch: 0 };
  readonly reconnects: Record<EtcdComponent, number> = { config: 0, lease: 0, watch: 0 };

  /** One request answered with `status` (null: no answer — unreachable, timed out, cut). */
  request(verb: KubeVerb, status: number | null): void {
    const k = `${verb} ${status === null ? 'none' : String(status)}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  watchRestart(reason: WatchRestartReason): void {
    this.watchRestarts[reason]++;
  }

  etcdError(component: EtcdComponent): void {
    this.errors[component]++;
  }

  etcdReconnected(component: EtcdComponent): void {
    this.reconnects[component]++;
  }

  /** Requests whose answer was not a 2xx (or that had none). */
  get failedRequests(): number {
    let n = 0;
    for (const [k, v] of this.requests) if (!/ 2\d\d$/.test(k)) n += v;
    return n;
  }
}
