/**
 * The real kube-apiserver (v1.20.2, from the anchors) on the topology's
 * real etcd, run inside the etcd namespace at 198.18.0.250:6443 so that the
 * daemons in the host namespaces reach it over the underlay. It generates a
 * self-signed serving certificate in its cert dir (the kubeconfig trusts
 * that file), accepts one bearer token (tokens.csv, group system:masters)
 * and authorizes everything. Started and stopped by PID.
 *
 * The test talks to it from inside the etcd namespace too (nothing is added
 * to the root namespace): `request()` runs a small node https client there.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ETCD_IP, formatCommand, giveUp, run, waitUntil, type Cluster, type ManagedProcess, type Netns } from '../../src/topology';
import { anchorBinary } from './anchors';

export const KUBE_API_PORT = 6443;

const REQUEST = `
const https = require('node:https');
const fs = require('node:fs');
const a = JSON.parse(process.argv[1]);
const body = a.body === undefined ? undefined : JSON.stringify(a.body);
const headers = { Authorization: 'Bearer ' + a.token, Accept: 'application/json' };
if (body !== undefined) { headers['Content-Type'] = a.contentType || 'application/json'; headers['Content-Length'] = Buffer.byteLength(body); }
const req = https.request(a.url, { method: a.method, headers, ca: fs.readFileSync(a.ca), timeout: 10000 }, (r) => {
  let b = '';
  r.setEncoding('utf8').on('data', (d) => (b += d));
  r.on('end', () => process.stdout.write(JSON.stringify({ status: r.statusCode, body: b })));
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (e) => process.stdout.write(JSON.stringify({ error: e.message })));
req.end(body);
`;

export interface KubeAnswer {
  status?: number;
  body?: string;
  error?: string;
}

export class KubeApiServer {
  proc: ManagedProcess | null = null;
  /**
   * false: `--watch-cache=false`, so every watch goes to etcd itself and a
   * watch from a compacted resourceVersion is answered `410 Gone` (too old
   * resource version) by the real storage layer. Read at each (re)start.
   */
  watchCache = true;
  readonly token = 'rudder-test-token-' + Math.random().toString(36).slice(2);
  readonly dir: string;

  private constructor(
    readonly cluster: Cluster,
    readonly bin: string,
  ) {
    this.dir = path.join(cluster.dir, 'kube-apiserver');
    fs.mkdirSync(path.join(this.dir, 'certs'), { recursive: true });
  }

  get ns(): Netns {
    const ns = this.cluster.etcdNs[0];
    if (!ns) throw new Error('the cluster has no etcd namespace');
    return ns;
  }

  get url(): string {
    return `https://${ETCD_IP}:${KUBE_API_PORT}`;
  }

  /** The serving certificate it generated (with its CA): what clients trust. */
  get caFile(): string {
    return path.join(this.dir, 'certs', 'apiserver.crt');
  }

  get logFile(): string {
    return path.join(this.dir, 'kube-apiserver.log');
  }

  get kubeconfigFile(): string {
    return path.join(this.dir, 'kubeconfig');
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** `--feature-gates` values (e.g. `IPv6DualStack=true`, which v1.20 needs to keep a Node's second podCIDR). */
  featureGates: string[] = [];

  static async start(cluster: Cluster, opts: { featureGates?: string[] } = {}): Promise<KubeApiServer> {
    const s = new KubeApiServer(cluster, await anchorBinary('kube-apiserver'));
    s.featureGates = opts.featureGates ?? [];
    fs.writeFileSync(path.join(s.dir, 'tokens.csv'), `${s.token},admin,admin-uid,"system:masters"\n`);
    await run(['openssl', 'genrsa', '-out', path.join(s.dir, 'sa.key'), '2048']);
    await run(['openssl', 'rsa', '-in', path.join(s.dir, 'sa.key'), '-pubout', '-out', path.join(s.dir, 'sa.pub')]);
    await s.startProcess();
    // A kubeconfig as kubectl writes it (YAML; the CA by path, relative to the file).
    fs.writeFileSync(
      s.kubeconfigFile,
      `apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: certs/apiserver.crt
    server: ${s.url}
  name: test
contexts:
- context:
    cluster: test
    user: rudder
  name: test
current-context: test
users:
- name: rudder
  user:
    token: ${s.token}
`,
    );
    return s;
  }

  argv(): string[] {
    return [
      this.bin,
      `--etcd-servers=${this.cluster.etcdEndpoints.join(',')}`,
      `--bind-address=${ETCD_IP}`,
      `--secure-port=${KUBE_API_PORT}`,
      '--insecure-port=0',
      `--cert-dir=${path.join(this.dir, 'certs')}`,
      `--token-auth-file=${path.join(this.dir, 'tokens.csv')}`,
      '--authorization-mode=AlwaysAllow',
      `--service-account-key-file=${path.join(this.dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(this.dir, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      '--service-cluster-ip-range=10.96.0.0/24',
      ...(this.watchCache ? [] : ['--watch-cache=false']),
      ...(this.featureGates.length ? [`--feature-gates=${this.featureGates.join(',')}`] : []),
    ];
  }

  private async startProcess(): Promise<void> {
    const argv = this.argv();
    fs.appendFileSync(this.logFile, `--- harness: starting ${formatCommand(argv)} in ${this.ns.name} at ${new Date().toISOString()}\n`);
    this.proc = await this.ns.spawn(argv, { logFile: this.logFile, label: 'kube-apiserver' });
    await waitUntil(
      async () => {
        if (this.proc && !this.proc.running) giveUp(new Error(`kube-apiserver exited before it was ready; log ${this.logFile}:\n${this.proc.logTail(3000)}`));
        const r = await this.request('GET', '/readyz');
        return r.status === 200 ? true : undefined;
      },
      { giveUpMs: 120_000, intervalMs: 500, what: `kube-apiserver ready (GET ${this.url}/readyz; log ${this.logFile})` },
    );
  }

  /** Stops it by PID (SIGTERM, then SIGKILL). */
  async stop(): Promise<void> {
    await this.proc?.stop(10_000);
  }

  async restart(opts: { watchCache?: boolean } = {}): Promise<void> {
    await this.stop();
    if (opts.watchCache !== undefined) this.watchCache = opts.watchCache;
    await this.startProcess();
  }

  /** One API request from inside the etcd namespace. */
  async request(method: string, p: string, body?: unknown, contentType?: string): Promise<KubeAnswer> {
    const arg = JSON.stringify({ url: this.url + p, method, body, contentType, token: this.token, ca: this.caFile });
    const r = await this.ns.exec([process.execPath, '-e', REQUEST, arg], { allowFailure: true });
    try {
      return JSON.parse(r.stdout) as KubeAnswer;
    } catch {
      return { error: `no answer (${r.stderr.trim() || r.stdout.trim()})` };
    }
  }

  /** A request that must succeed; its JSON answer. */
  async call<T = Record<string, unknown>>(method: string, p: string, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.request(method, p, body, contentType);
    if (r.status === undefined || r.status < 200 || r.status > 299) throw new Error(`${method} ${p}: ${r.error ?? `${r.status} ${r.body ?? ''}`}`);
    return JSON.parse(r.body ?? 'null') as T;
  }

  /** A Node as kube-controller-manager leaves it: podCIDR(s) set (and, for flanneld's sake, one annotation). */
  createNode(name: string, podCIDR: string, annotations: Record<string, string> = { 'test.rudder/created-by': 'kube.test' }): Promise<Record<string, unknown>> {
    return this.call('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, annotations },
      spec: { podCIDR, podCIDRs: [podCIDR] },
    });
  }

  getNode(name: string): Promise<KubeNodeJson> {
    return this.call<KubeNodeJson>('GET', `/api/v1/nodes/${name}`);
  }

  /** A JSON merge patch of a Node's annotations (null removes one). */
  annotateNode(name: string, annotations: Record<string, string | null>): Promise<unknown> {
    return this.call('PATCH', `/api/v1/nodes/${name}`, { metadata: { annotations } }, 'application/merge-patch+json');
  }

  deleteNode(name: string): Promise<unknown> {
    return this.call('DELETE', `/api/v1/nodes/${name}`);
  }

  log(maxBytes = 3000): string {
    return this.proc?.logTail(maxBytes) ?? '';
  }
}

export interface KubeNodeJson {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { podCIDR?: string };
  status?: { conditions?: { type: string; status: string; reason?: string }[] };
}
