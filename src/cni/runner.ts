/**
 * `rudder cni-config`: writes the CNI conflist built by ./config.ts from the
 * subnet file into the runtime's config directory (default /etc/cni/net.d).
 *
 * The file is replaced atomically (temp file in the same directory, fsync,
 * rename; the temp name ends in .tmp, which CNI runtimes do not load) and only
 * when its content changes. With -watch it keeps running and refreshes the
 * file whenever the subnet file changes (the daemon got a different lease):
 * fs.watch on the subnet file's directory (the daemon replaces the file by
 * rename, so watching the file itself would lose it) plus a periodic check,
 * until SIGINT/SIGTERM.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeError, RudderError } from '../errors';
import { readSubnetFile, SUBNET_FILE_TO_READ, SubnetFileUnreadable } from '../subnet/file';
import { writeFileAtomic } from '../util/atomic-write';
import { createLogger, Logger } from '../log';
import { formatDuration, formatUsage, HELP_FLAG, parseFlags, type FlagSpec } from '../util/flags';
import { buildConfList, conflistFileName, formatConfList, CniOptions, DEFAULT_CNI_BRIDGE, DEFAULT_CNI_DIR, DEFAULT_CNI_NAME, validIfname, validNetworkName } from './config';

export interface CniRunOptions extends CniOptions {
  subnetFile: string;
  /** Directory of the conflist (the runtime's CNI config dir). */
  outDir: string;
  /** Periodic re-check under watch, in addition to fs.watch. */
  checkIntervalMs: number;
}

export function conflistPath(o: Pick<CniRunOptions, 'outDir' | 'name'>): string {
  return path.join(o.outDir, conflistFileName(o.name ?? DEFAULT_CNI_NAME));
}

/**
 * Writes `text` to `file` unless it already holds exactly that; atomic
 * (temp + fsync + rename). True when it wrote.
 */
export async function writeIfChanged(file: string, text: string): Promise<boolean> {
  let current: string | null = null;
  try {
    current = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (current === text) return false;
  try {
    await writeFileAtomic(file, text);
  } catch (e) {
    throw new Error(`cannot write ${file}: ${(e as Error).message}`, { cause: e });
  }
  return true;
}

export type RefreshResult = { wrote: boolean; file: string; subnet: string };

/** Reads the subnet file, builds the conflist and writes it if it changed. Throws E_SUBNET_FILE when the file is missing or invalid. */
export async function refreshOnce(o: CniRunOptions): Promise<RefreshResult> {
  const conf = formatConfList(buildConfList(await readSubnetFile(o.subnetFile), o));
  const file = conflistPath(o);
  const wrote = await writeIfChanged(file, conf);
  const subnet = (JSON.parse(conf) as { plugins: Array<{ ipam?: { ranges?: Array<Array<{ subnet: string }>> } }> }).plugins[0]?.ipam?.ranges?.[0]?.[0]?.subnet ?? '?';
  return { wrote, file, subnet };
}

/**
 * Keeps the conflist in step with the subnet file until `signal` aborts.
 * A missing or invalid subnet file is logged (once per distinct problem) and
 * waited out; the conflist already written stays as it is meanwhile.
 */
export async function watchSubnetFile(o: CniRunOptions, signal: AbortSignal, log: Logger): Promise<void> {
  const dir = path.dirname(o.subnetFile);
  const base = path.basename(o.subnetFile);
  let watcher: fs.FSWatcher | null = null;
  let pending = false;
  let wake: (() => void) | null = null;
  const kick = (): void => {
    pending = true;
    wake?.();
  };
  const ensureWatcher = (): void => {
    if (watcher) return;
    try {
      const w = fs.watch(dir, { persistent: true }, (_ev, name) => {
        if (name === null || name === base) kick();
      });
      w.on('error', () => {
        w.close();
        if (watcher === w) watcher = null;
        kick();
      });
      watcher = w;
      log.debug('watching', { dir });
    } catch (e) {
      // The directory does not exist yet: the periodic check covers it, and the watch is retried.
      log.debug('cannot watch yet', { dir, error: describeError(e) });
    }
  };
  let lastProblem = '';
  try {
    while (!signal.aborted) {
      ensureWatcher();
      pending = false;
      try {
        const r = await refreshOnce(o);
        if (r.wrote) log.info('wrote CNI config', { file: r.file, subnet: r.subnet });
        else if (lastProblem !== '') log.info('CNI config up to date', { file: r.file, subnet: r.subnet });
        lastProblem = '';
      } catch (e) {
        const msg = describeError(e);
        if (msg !== lastProblem) {
          const missing = e instanceof SubnetFileUnreadable && e.errno === 'ENOENT';
          if (missing) log.info('waiting for the subnet file', { file: o.subnetFile });
          else log.error('cannot refresh the CNI config; keeping the one written before', { error: msg });
          lastProblem = msg;
        }
      }
      if (signal.aborted) break;
      await new Promise<void>((resolve) => {
        if (pending) {
          resolve();
          return;
        }
        const done = (): void => {
          clearTimeout(timer);
          wake = null;
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, o.checkIntervalMs);
        wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
    }
  } finally {
    (watcher as fs.FSWatcher | null)?.close();
  }
}

// ------------------------------------------------------------------ command

export const CNI_FLAGS: readonly FlagSpec[] = [
  { name: 'out', kind: 'string', default: DEFAULT_CNI_DIR, env: false, help: 'directory to write the conflist to (the runtime\'s CNI config dir)' },
  { name: 'watch', kind: 'bool', env: false, help: 'keep running and rewrite the conflist whenever the subnet file changes, until SIGINT/SIGTERM' },
  SUBNET_FILE_TO_READ,
  { name: 'name', kind: 'string', default: DEFAULT_CNI_NAME, env: false, help: 'CNI network name; the file is 10-NAME.conflist' },
  { name: 'bridge', kind: 'string', default: DEFAULT_CNI_BRIDGE, env: false, help: 'bridge device the bridge plugin attaches pods to' },
  { name: 'ipam-data-dir', kind: 'string', env: false, help: 'host-local IPAM\'s store of allocated addresses (default: the plugin\'s, /var/lib/cni/networks)' },
  { name: 'default-route', kind: 'bool', default: 'true', env: false, help: 'give pods a default route via the bridge; false routes only RUDDER_NETWORK' },
  { name: 'check-interval', kind: 'duration', default: '10s', min: 100, env: false, help: 'with -watch: also re-check the subnet file this often' },
  { name: 'v', kind: 'int', min: 0, max: 10, default: '0', env: false, help: 'log verbosity (with -watch)' },
  HELP_FLAG,
];

export function cniConfigUsage(): string {
  return formatUsage(
    'Usage: rudder cni-config [-out DIR] [-watch] [-subnet-file=FILE] [-name NAME] [-bridge DEV] [-ipam-data-dir DIR] [-default-route=false]\n\n' +
      'Writes a CNI network config list (bridge + host-local IPAM over this host\'s subnet, then portmap)\n' +
      'built from the subnet file, atomically and only when it changes.',
    CNI_FLAGS,
  );
}

export interface CniIo {
  out(s: string): void;
  err(s: string): void;
}

/** `rudder cni-config ...`: returns the exit status (2: flag error, 1: failure). */
export async function cniConfigCommand(args: readonly string[], defaultSubnetFile: string, io: CniIo): Promise<number> {
  let p: ReturnType<typeof parseFlags>;
  try {
    p = parseFlags(CNI_FLAGS, args, {});
    if (p.rest.length > 0) throw new RudderError('E_FLAG', `unexpected argument ${JSON.stringify(p.rest[0])}`);
    const name = p.values.get('name') as string;
    const bridge = p.values.get('bridge') as string;
    if (!validNetworkName(name)) throw new RudderError('E_FLAG', `-name=${JSON.stringify(name)}: expected letters, digits, "_", "." or "-", starting with a letter or digit`);
    if (!validIfname(bridge)) throw new RudderError('E_FLAG', `-bridge=${JSON.stringify(bridge)}: expected an interface name of 1 to 15 characters without "/", ":" or spaces`);
    if ((p.values.get('out') as string) === '') throw new RudderError('E_FLAG', '-out="": expected a directory such as /etc/cni/net.d');
  } catch (e) {
    io.err(`rudder cni-config: ${(e as Error).message}`);
    io.err('');
    io.err(cniConfigUsage());
    return 2;
  }
  if (p.values.get('help') === true) {
    io.out(cniConfigUsage());
    return 0;
  }
  const dataDir = p.values.get('ipam-data-dir') as string | undefined;
  const o: CniRunOptions = {
    subnetFile: (p.values.get('subnet-file') as string | undefined) || defaultSubnetFile,
    outDir: p.values.get('out') as string,
    name: p.values.get('name') as string,
    bridge: p.values.get('bridge') as string,
    defaultRoute: p.values.get('default-route') === true,
    checkIntervalMs: p.values.get('check-interval') as number,
    ...(dataDir ? { ipamDataDir: dataDir } : {}),
  };
  if (p.values.get('watch') !== true) {
    const r = await refreshOnce(o);
    io.err(r.wrote ? `wrote ${r.file} (subnet ${r.subnet})` : `${r.file} is up to date (subnet ${r.subnet})`);
    return 0;
  }
  const log = createLogger({ verbosity: p.values.get('v') as number }).child({ component: 'cni-config' });
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) return;
    log.info('stopping', { signal: sig });
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    log.info('watching the subnet file', { file: o.subnetFile, conflist: conflistPath(o), checkEvery: formatDuration(o.checkIntervalMs) });
    await watchSubnetFile(o, ac.signal, log);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
