/**
 * A small container runtime's CNI side, for the e2e tests: runs the plugins
 * of a network config list the way libcni (containerd, CRI-O, kubelet's
 * dockershim) does it, so the conflist `rudder cni-config` writes is tested
 * as a runtime would use it.
 *
 * - ADD: each plugin in order; each gets the plugin's own config plus the
 *   list's `name` and `cniVersion`, `prevResult` = the previous plugin's
 *   result, and `runtimeConfig` holding those capability arguments the plugin
 *   declares in `capabilities` (portMappings for portmap). The last result is
 *   the attachment's result ("cached", as libcni does, for CHECK and DEL).
 * - CHECK: each plugin in order with prevResult = the cached result.
 * - DEL: each plugin in reverse order with prevResult = the cached result.
 * - Environment: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
 *   CNI_ARGS, CNI_PATH (and PATH: plugins run iptables); the config on stdin.
 *   A plugin's error is the JSON on its stdout ({code, msg, details}).
 *
 * The plugins run inside `hostNs` (`ip netns exec`), so what they build on the
 * "host" side (the bridge, the veth's host end, iptables rules) is made in
 * that namespace, never in the machine's own.
 */
import * as path from 'node:path';
import { run, type Netns } from '../../src/topology';

export const CNI_PATH = '/usr/lib/cni';

export interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string; capabilities?: Record<string, boolean> }>;
}

export interface CniRuntimeConf {
  containerId: string;
  /** Path of the container's network namespace, e.g. /var/run/netns/<name>. */
  netnsPath: string;
  ifName: string;
  /** Capability arguments (libcni's CapabilityArgs), e.g. { portMappings: [...] }. */
  capabilityArgs?: Record<string, unknown>;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: CniIpConfig[];
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: unknown;
}

export class CniPluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    let detail = stdout.trim() || stderr.trim() || '(no output)';
    try {
      const e = JSON.parse(stdout) as { code?: number; msg?: string; details?: string };
      if (e.msg !== undefined) detail = `code ${e.code}: ${e.msg}${e.details ? ` (${e.details})` : ''}`;
    } catch {
      // not JSON: keep the raw output
    }
    super(`CNI ${command} of plugin ${plugin} failed (exit ${exitCode}): ${detail}`);
    this.name = 'CniPluginError';
  }
}

/** The config one plugin of the list gets on stdin (libcni's buildOneConfig). */
export function pluginConfig(list: ConfList, plugin: ConfList['plugins'][number], rt: CniRuntimeConf, prevResult: CniResult | null): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== null) conf.prevResult = prevResult;
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    if (on && rt.capabilityArgs && cap in rt.capabilityArgs) runtimeConfig[cap] = rt.capabilityArgs[cap];
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  return conf;
}

export class CniRuntime {
  constructor(
    /** The "host" namespace the plugins run in. */
    readonly hostNs: Netns,
    readonly cniPath = CNI_PATH,
  ) {}

  private async exec(command: 'ADD' | 'CHECK' | 'DEL', list: ConfList, plugin: ConfList['plugins'][number], rt: CniRuntimeConf, prev: CniResult | null): Promise<string> {
    const conf = pluginConfig(list, plugin, rt, prev);
    if (!/^[A-Za-z0-9_.-]+$/.test(plugin.type)) throw new Error(`plugin type ${JSON.stringify(plugin.type)} is not a file name`);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: rt.containerId,
      CNI_NETNS: rt.netnsPath,
      CNI_IFNAME: rt.ifName,
      CNI_ARGS: '',
      CNI_PATH: this.cniPath,
    };
    const r = await run(['ip', 'netns', 'exec', this.hostNs.name, path.join(this.cniPath, plugin.type)], {
      env,
      input: JSON.stringify(conf),
      allowFailure: true,
    });
    if (r.code !== 0) throw new CniPluginError(plugin.type, command, r.code, r.stdout, r.stderr);
    return r.stdout;
  }

  /** ADD through the whole list; returns the final (cached) result. */
  async add(list: ConfList, rt: CniRuntimeConf): Promise<CniResult> {
    let prev: CniResult | null = null;
    for (const p of list.plugins) {
      const out = await this.exec('ADD', list, p, rt, prev);
      prev = JSON.parse(out) as CniResult;
    }
    if (prev === null) throw new Error('empty plugin list');
    return prev;
  }

  /** CHECK through the whole list against the cached ADD result; throws CniPluginError on a failed check. */
  async check(list: ConfList, rt: CniRuntimeConf, cached: CniResult): Promise<void> {
    for (const p of list.plugins) await this.exec('CHECK', list, p, rt, cached);
  }

  /** DEL through the list in reverse order. */
  async del(list: ConfList, rt: CniRuntimeConf, cached: CniResult | null): Promise<void> {
    for (const p of [...list.plugins].reverse()) await this.exec('DEL', list, p, rt, cached);
  }
}
