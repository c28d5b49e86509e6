/**
 * A minimal Kubernetes API client over node:https: JSON requests and a
 * streaming watch (one JSON event per line). Connection settings come from a
 * kubeconfig file (server, CA, bearer token or token file, client
 * certificate and key) or, without one, from the in-cluster service account
 * (token and CA under /var/run/secrets/kubernetes.io/serviceaccount,
 * KUBERNETES_SERVICE_HOST/PORT). A token file is read again at most every
 * minute, so rotated service-account tokens are picked up. A kubeconfig
 * `exec` plugin gives the token instead (exec-credential.ts); an
 * `auth-provider` is refused by name. A 401 drops the token held (a token
 * file is read again, a plugin runs again) and the request is sent once more.
 * Every request is counted in KubeStats when one is given.
 *
 * Every failure is a KubeApiError (E_KUBE) naming the method, the URL and
 * what failed; `status` is the HTTP status when the server answered.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { RudderError, describeError } from '../../errors';
import { ExecCredentials, readExecConfig, type ExecConfig } from './exec-credential';
import { kubeVerb, type KubeStats } from './stats';
import { parseYaml, type YamlValue } from './yaml';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubeApiError extends RudderError {
  constructor(
    message: string,
    readonly status: number | null,
    options?: { cause?: unknown },
  ) {
    super('E_KUBE', message, options);
    this.name = 'KubeApiError';
  }
}

/** A watch the server closed cleanly (its timeoutSeconds ran out): resumable from the last resourceVersion. */
export class WatchEnded extends KubeApiError {
  constructor(message: string) {
    super(message, null);
    this.name = 'WatchEnded';
  }
}

export interface KubeConnection {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
  tokenFile?: string;
  /** A credential plugin that prints the token (kubeconfig users[].user.exec). */
  exec?: ExecConfig;
  insecureSkipTlsVerify: boolean;
  /** Where the settings came from, for messages. */
  origin: string;
}

type Obj = { [k: string]: YamlValue };

function obj(v: YamlValue | undefined): Obj | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : null;
}

function strOf(o: Obj | null, k: string): string | undefined {
  const v = o?.[k];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The `name`d entry of a kubeconfig list (clusters, users, contexts), its inner object. */
function named(cfg: Obj, list: string, inner: string, name: string | undefined): Obj | null {
  const arr = cfg[list];
  if (!Array.isArray(arr)) return null;
  const entries = arr.map(obj).filter((e): e is Obj => e !== null);
  const e = name === undefined ? entries[0] : entries.find((x) => x.name === name);
  return obj(e?.[inner]);
}

/**
 * Reads a kubeconfig (current context, or the first one) into connection
 * settings; relative file paths are relative to the kubeconfig's directory.
 */
export function readKubeconfig(file: string, text: string = fs.readFileSync(file, 'utf8')): KubeConnection {
  const bad = (what: string): RudderError => new RudderError('E_FLAG', `kubeconfig ${file}: ${what}`);
  let cfg: Obj | null;
  try {
    cfg = obj(parseYaml(text));
  } catch (e) {
    throw new RudderError('E_FLAG', `kubeconfig ${file}: not readable YAML`, { cause: e });
  }
  if (!cfg) throw bad('expected a mapping with clusters, users and contexts');
  const ctxName = strOf(cfg, 'current-context');
  const ctx = named(cfg, 'contexts', 'context', ctxName);
  if (ctxName !== undefined && !ctx) throw bad(`current-context ${JSON.stringify(ctxName)} is not among its contexts`);
  const cluster = named(cfg, 'clusters', 'cluster', strOf(ctx, 'cluster'));
  if (!cluster) throw bad(`no cluster${strOf(ctx, 'cluster') ? ` named ${JSON.stringify(strOf(ctx, 'cluster'))}` : ''}`);
  const userName = strOf(ctx, 'user');
  const user = named(cfg, 'users', 'user', userName) ?? {};
  const userWhat = userName === undefined ? 'the user' : `user ${JSON.stringify(userName)}`;
  const provider = obj(user['auth-provider']);
  if (user['auth-provider'] !== undefined) {
    const pname = strOf(provider, 'name') ?? '(unnamed)';
    throw bad(
      `${userWhat} authenticates with auth-provider ${JSON.stringify(pname)}, which Rudder does not support (client-go dropped the gcp and azure providers too): use an exec plugin (for gcp: gke-gcloud-auth-plugin, for azure: kubelogin), a token, tokenFile or a client certificate`,
    );
  }
  const dir = path.dirname(file);
  const fileOrData = (o: Obj, k: string): Buffer | undefined => {
    const data = strOf(o, `${k}-data`);
    if (data !== undefined) return Buffer.from(data, 'base64');
    const f = strOf(o, k);
    if (f === undefined) return undefined;
    try {
      return fs.readFileSync(path.resolve(dir, f));
    } catch (e) {
      throw new RudderError('E_FLAG', `kubeconfig ${file}: ${k} ${f} is not readable`, { cause: e });
    }
  };
  const server = strOf(cluster, 'server');
  if (server === undefined) throw bad('the cluster has no server URL');
  const tokenFile = strOf(user, 'tokenFile');
  const conn: KubeConnection = {
    server,
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
    origin: `kubeconfig ${file}`,
  };
  const ca = fileOrData(cluster, 'certificate-authority');
  if (ca) conn.ca = ca;
  const cert = fileOrData(user, 'client-certificate');
  const key = fileOrData(user, 'client-key');
  if ((cert === undefined) !== (key === undefined)) throw bad('client-certificate and client-key must be given together');
  if (cert && key) {
    conn.cert = cert;
    conn.key = key;
  }
  const token = strOf(user, 'token');
  if (token !== undefined) conn.token = token;
  if (tokenFile !== undefined) conn.tokenFile = path.resolve(dir, tokenFile);
  if (user.exec !== undefined) {
    const exec = readExecConfig(user.exec, dir);
    if (typeof exec === 'string') throw bad(`${userWhat}: ${exec}`);
    conn.exec = exec;
  }
  return conn;
}

/** In-cluster settings: the pod's service account and the kubernetes Service's address. */
export function inClusterConnection(env: Readonly<Record<string, string | undefined>>, dir = SERVICE_ACCOUNT_DIR): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  const tokenFile = path.join(dir, 'token');
  if (!host || !fs.existsSync(tokenFile)) {
    throw new RudderError(
      'E_FLAG',
      `Kubernetes mode needs -kubeconfig-file, or to run in a pod with a service account (KUBERNETES_SERVICE_HOST${host ? ' is set' : ' is not set'}; ${tokenFile} ${fs.existsSync(tokenFile) ? 'exists' : 'does not exist'})`,
    );
  }
  const conn: KubeConnection = {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    tokenFile,
    insecureSkipTlsVerify: false,
    origin: `in-cluster service account (${dir})`,
  };
  const caFile = path.join(dir, 'ca.crt');
  if (fs.existsSync(caFile)) conn.ca = fs.readFileSync(caFile);
  return conn;
}

/** A Kubernetes watch event as sent on the wire. */
export interface WatchEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: Record<string, unknown>;
}

export interface KubeClientOptions {
  /** Per-request timeout (not for watches), ms. */
  timeoutMs?: number;
  /** How long a token read from a token file is used before the file is read again, ms (default 60 s). */
  tokenRereadMs?: number;
  /** Counts every request by verb and status. */
  stats?: KubeStats;
  /** The environment an exec plugin inherits (default: ours). */
  env?: Readonly<Record<string, string | undefined>>;
}

export class KubeClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private tokenCache: { value: string; at: number } | null = null;
  private readonly exec: ExecCredentials | null;

  constructor(
    readonly conn: KubeConnection,
    private readonly opts: KubeClientOptions = {},
  ) {
    this.base = new URL(conn.server);
    const tls = this.base.protocol === 'https:';
    this.agent = tls
      ? new https.Agent({
          keepAlive: true,
          ...(conn.ca ? { ca: conn.ca } : {}),
          ...(conn.cert ? { cert: conn.cert, key: conn.key } : {}),
          rejectUnauthorized: !conn.insecureSkipTlsVerify,
        })
      : new http.Agent({ keepAlive: true });
    // As in kubectl: a token or token file beside an exec plugin wins, and the plugin is not run.
    this.exec = conn.exec && conn.token === undefined && conn.tokenFile === undefined ? new ExecCredentials(conn.exec, opts.env) : null;
  }

  get server(): string {
    return this.conn.server;
  }

  /** The bearer token: an exec plugin's, else the token file's, else the kubeconfig's. */
  private async token(): Promise<string | undefined> {
    if (this.exec) return this.exec.token();
    const f = this.conn.tokenFile;
    if (f === undefined) return this.conn.token;
    const now = Date.now();
    if (this.tokenCache && now - this.tokenCache.at < (this.opts.tokenRereadMs ?? 60_000)) return this.tokenCache.value;
    try {
      this.tokenCache = { value: fs.readFileSync(f, 'utf8').trim(), at: now };
    } catch (e) {
      if (!this.tokenCache) throw new KubeApiError(`cannot read the API token ${f}: ${describeError(e)}`, null, { cause: e });
    }
    return this.tokenCache.value;
  }

  /** The server answered 401 to `token`: get a new one before the next request. */
  private rejected(token: string | undefined): void {
    if (token === undefined) return;
    this.exec?.rejected(token);
    if (this.tokenCache?.value === token) this.tokenCache = null;
  }

  private count(method: string, p: string, status: number | null): void {
    this.opts.stats?.request(kubeVerb(method, p), status);
  }

  private url(p: string): URL {
    const u = new URL(this.base.href);
    const [pathname, query] = p.split('?', 2) as [string, string | undefined];
    u.pathname = (this.base.pathname.replace(/\/$/, '') + pathname).replace(/\/\/+/g, '/');
    u.search = query ?? '';
    return u;
  }

  private async open(method: string, p: string, body: string | undefined, contentType: string | undefined, timeoutMs: number | null): Promise<{ req: http.ClientRequest; url: URL; token: string | undefined }> {
    const url = this.url(p);
    const headers: Record<string, string> = { Accept: 'application/json' };
    const token = await this.token();
    if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers['Content-Type'] = contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, { method, headers, agent: this.agent });
    if (timeoutMs !== null) req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('socket', (s) => s.setKeepAlive(true, 10_000));
    req.end(body);
    return { req, url, token };
  }

  /** One request; resolves with the decoded JSON answer of a 2xx status. A 401 is retried once with a new token. */
  async request<T = Record<string, unknown>>(method: string, p: string, body?: unknown, contentType?: string): Promise<T> {
    try {
      return await this.requestOnce<T>(method, p, body, contentType);
    } catch (e) {
      if (!(e instanceof KubeApiError && e.status === 401) || (this.exec === null && this.conn.tokenFile === undefined)) throw e;
      return this.requestOnce<T>(method, p, body, contentType);
    }
  }

  private async requestOnce<T>(method: string, p: string, body?: unknown, contentType?: string): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    let opened: { req: http.ClientRequest; url: URL; token: string | undefined };
    try {
      opened = await this.open(method, p, text, contentType, this.opts.timeoutMs ?? 15_000);
    } catch (e) {
      throw e instanceof KubeApiError ? e : new KubeApiError(`${method} ${this.server}${p}: ${describeError(e)}`, null, { cause: e });
    }
    const { req, url, token } = opened;
    return new Promise<T>((resolve, reject) => {
      const what = `${method} ${url.origin}${url.pathname}`;
      let answered = false;
      req.on('error', (e) => {
        if (!answered) this.count(method, p, null);
        reject(new KubeApiError(`Kubernetes API server ${url.origin} unreachable: ${what}: ${describeError(e)}`, null, { cause: e }));
      });
      req.on('response', (res) => {
        answered = true;
        const status = res.statusCode ?? 0;
        this.count(method, p, status);
        if (status === 401) this.rejected(token);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new KubeApiError(`${what}: answer cut short: ${describeError(e)}`, null, { cause: e })));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          try {
            json = raw === '' ? null : JSON.parse(raw);
          } catch {
            json = null;
          }
          if (status < 200 || status > 299) {
            reject(new KubeApiError(`${what}: ${status} ${statusMessage(json, raw)}${hintFor(status)}`, status));
            return;
          }
          resolve(json as T);
        });
      });
    });
  }

  /**
   * Streams a watch. `onEvent` gets each event; the returned promise
   * resolves with the reason when the stream ends (server timeout,
   * disconnect, an HTTP error) and never rejects. `stop` ends it.
   */
  watch(p: string, onEvent: (e: WatchEvent) => void): { ended: Promise<unknown>; stop(): void } {
    let req: http.ClientRequest | null = null;
    let stopped = false;
    const ended = new Promise<unknown>((resolve) => {
      this.open('GET', p, undefined, undefined, null).then(
        (o) => {
          if (stopped) {
            o.req.destroy();
            resolve(null);
            return;
          }
          req = o.req;
          this.follow(o.req, o.url, o.token, p, onEvent, () => stopped, resolve);
        },
        (e: unknown) => resolve(e),
      );
    });
    return {
      ended,
      stop: () => {
        stopped = true;
        req?.destroy();
      },
    };
  }

  /** Reads a watch's answer: events to `onEvent`, the end (or error) to `resolve`. */
  private follow(req: http.ClientRequest, url: URL, token: string | undefined, p: string, onEvent: (e: WatchEvent) => void, stopped: () => boolean, resolve: (reason: unknown) => void): void {
    const what = `watch ${url.origin}${url.pathname}`;
    let answered = false;
    req.on('error', (e) => {
      if (!stopped() && !answered) this.count('GET', p, null);
      resolve(stopped() ? null : new KubeApiError(`Kubernetes API server ${url.origin} unreachable: ${what}: ${describeError(e)}`, null, { cause: e }));
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      answered = true;
      this.count('GET', p, status);
      if (status === 401) this.rejected(token);
      let buf = '';
      if (status < 200 || status > 299) {
        res.on('data', (c: Buffer) => (buf += c.toString('utf8')));
        res.on('end', () => {
          let json: unknown = null;
          try {
            json = JSON.parse(buf);
          } catch {
            json = null;
          }
          resolve(new KubeApiError(`${what}: ${status} ${statusMessage(json, buf)}${hintFor(status)}`, status));
        });
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line === '') continue;
          try {
            onEvent(JSON.parse(line) as WatchEvent);
          } catch (e) {
            req.destroy();
            resolve(new KubeApiError(`${what}: bad event ${JSON.stringify(line.slice(0, 80))}: ${describeError(e)}`, null, { cause: e }));
            return;
          }
        }
      });
      res.on('error', (e) => resolve(new KubeApiError(`${what}: stream broken: ${describeError(e)}`, null, { cause: e })));
      res.on('end', () => resolve(new WatchEnded(`${what}: the server ended the watch`)));
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function statusMessage(json: unknown, raw: string): string {
  const o = json as { message?: unknown; reason?: unknown } | null;
  if (o && typeof o.message === 'string') return `${typeof o.reason === 'string' ? o.reason + ': ' : ''}${o.message}`;
  return raw.slice(0, 200).trim();
}

function hintFor(status: number): string {
  if (status === 401) return ' (the token or client certificate is not accepted)';
  if (status === 403) return ' (RBAC: the ClusterRole needs nodes get/list/watch/patch and nodes/status patch; see packaging/kubernetes/rudder.yaml)';
  return '';
}
