/**
 * kubeconfig `exec` credential plugins (client.authentication.k8s.io
 * v1beta1 and v1): the command runs with its args and env added to ours,
 * KUBERNETES_EXEC_INFO describing the request, no stdin; it prints an
 * ExecCredential whose status.token is the bearer token. The token is kept
 * until its expirationTimestamp (a little before), or — without one — until
 * the server answers 401; then the plugin runs again. Concurrent callers
 * share one run.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { RudderError, describeError } from '../../errors';
import type { YamlValue } from './yaml';

export const EXEC_API_VERSIONS = ['client.authentication.k8s.io/v1beta1', 'client.authentication.k8s.io/v1'] as const;

export interface ExecConfig {
  readonly apiVersion: (typeof EXEC_API_VERSIONS)[number];
  /** As written, or resolved against the kubeconfig's directory when it is a relative path with a slash. */
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly installHint?: string | undefined;
}

/** The user's `exec` mapping as an ExecConfig, or a message saying what is wrong with it. */
export function readExecConfig(v: YamlValue | undefined, kubeconfigDir: string): ExecConfig | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'exec must be a mapping';
  const apiVersion = v.apiVersion;
  if (typeof apiVersion !== 'string' || !(EXEC_API_VERSIONS as readonly string[]).includes(apiVersion)) {
    return `exec apiVersion ${JSON.stringify(apiVersion ?? null)} is not supported (${EXEC_API_VERSIONS.join(' or ')})`;
  }
  const command = v.command;
  if (typeof command !== 'string' || command === '') return 'exec has no command';
  const args = v.args ?? [];
  if (!Array.isArray(args) || !args.every((a): a is string => typeof a === 'string')) return 'exec args must be a list of strings';
  const env: Record<string, string> = {};
  const rawEnv = v.env ?? [];
  if (!Array.isArray(rawEnv)) return 'exec env must be a list of {name, value}';
  for (const e of rawEnv) {
    if (typeof e !== 'object' || e === null || Array.isArray(e) || typeof e.name !== 'string' || typeof e.value !== 'string') return 'exec env must be a list of {name, value}';
    env[e.name] = e.value;
  }
  const hint = v.installHint;
  return {
    apiVersion: apiVersion as ExecConfig['apiVersion'],
    command: command.includes('/') && !path.isAbsolute(command) ? path.resolve(kubeconfigDir, command) : command,
    args,
    env,
    installHint: typeof hint === 'string' ? hint : undefined,
  };
}

export interface ExecToken {
  readonly token: string;
  /** ms since the epoch; null: valid until the server says otherwise (401). */
  readonly expiresAt: number | null;
}

/** The token of a plugin's stdout, or throws an Error saying what is wrong with it. */
export function parseExecCredential(stdout: string, apiVersion: string): ExecToken {
  let o: unknown;
  try {
    o = JSON.parse(stdout);
  } catch {
    throw new Error(`its output is not JSON: ${JSON.stringify(stdout.slice(0, 80))}`);
  }
  const cred = o as { apiVersion?: unknown; kind?: unknown; status?: { token?: unknown; expirationTimestamp?: unknown; clientCertificateData?: unknown } } | null;
  if (cred?.kind !== 'ExecCredential') throw new Error(`its output is not an ExecCredential (kind ${JSON.stringify(cred?.kind ?? null)})`);
  if (cred.apiVersion !== apiVersion) throw new Error(`it answered apiVersion ${JSON.stringify(cred.apiVersion ?? null)}, the kubeconfig asks for ${apiVersion}`);
  const st = cred.status;
  if (typeof st?.token !== 'string' || st.token === '') {
    throw new Error(st?.clientCertificateData !== undefined ? 'it returned a client certificate, which Rudder does not take from a plugin (only status.token)' : 'its status has no token');
  }
  let expiresAt: number | null = null;
  if (st.expirationTimestamp !== undefined && st.expirationTimestamp !== null) {
    expiresAt = typeof st.expirationTimestamp === 'string' ? Date.parse(st.expirationTimestamp) : NaN;
    if (!Number.isFinite(expiresAt)) throw new Error(`status.expirationTimestamp ${JSON.stringify(st.expirationTimestamp)} is not an RFC 3339 time`);
  }
  return { token: st.token, expiresAt };
}

/** How long before its expiry a token is no longer used (the plugin runs again). */
export const EXPIRY_MARGIN_MS = 5_000;

export class ExecCredentials {
  private current: ExecToken | null = null;
  private running: Promise<ExecToken> | null = null;

  constructor(
    readonly cfg: ExecConfig,
    private readonly env: Readonly<Record<string, string | undefined>> = process.env,
    private readonly timeoutMs = 30_000,
  ) {}

  /** A token still valid now, from the last run or a new one. */
  async token(now = Date.now()): Promise<string> {
    const c = this.current;
    if (c && (c.expiresAt === null || c.expiresAt - EXPIRY_MARGIN_MS > now)) return c.token;
    this.running ??= this.run().finally(() => (this.running = null));
    this.current = await this.running;
    return this.current.token;
  }

  /** The server refused `token` (401): the next token() runs the plugin again. */
  rejected(token: string): void {
    if (this.current?.token === token) this.current = null;
  }

  private run(): Promise<ExecToken> {
    const { command, args, apiVersion } = this.cfg;
    const env = { ...this.env, ...this.cfg.env, KUBERNETES_EXEC_INFO: JSON.stringify({ apiVersion, kind: 'ExecCredential', spec: { interactive: false } }) };
    const what = `the kubeconfig exec plugin ${[command, ...args].join(' ')}`;
    return new Promise<ExecToken>((resolve, reject) => {
      const child = execFile(command, [...args], { env, timeout: this.timeoutMs, maxBuffer: 1 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) {
          const e = err as Omit<NodeJS.ErrnoException, 'code'> & { code?: string | number; killed?: boolean };
          const said = stderr.trim() ? `: ${stderr.trim().slice(0, 300)}` : '';
          const why =
            e.code === 'ENOENT'
              ? `not found${this.cfg.installHint ? ` (${this.cfg.installHint.trim()})` : ''}`
              : e.killed
                ? `gave no answer within ${this.timeoutMs} ms`
                : typeof e.code === 'number'
                  ? `failed: exit status ${e.code}${said}`
                  : `failed: ${describeError(err)}${said}`;
          reject(new RudderError('E_KUBE', `${what}: ${why}`, { cause: err }));
          return;
        }
        try {
          resolve(parseExecCredential(stdout, apiVersion));
        } catch (e) {
          reject(new RudderError('E_KUBE', `${what}: ${describeError(e)}`, { cause: e }));
        }
      });
      child.stdin?.end();
    });
  }
}
