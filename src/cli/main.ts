/**
 * `bin/rudder`: flags first (Go- or GNU-style, environment fallback), then
 * an optional subcommand; with none, the daemon runs until SIGINT/SIGTERM.
 * Flag errors exit 2 with usage; other failures exit 1 with one clear line.
 */
import { Daemon } from '../daemon';
import { describeError, isRudderError } from '../errors';
import { resolveExternalInterface } from '../iface';
import { runNft } from '../ipmasq';
import { createLogger, Logger } from '../log';
import { EtcdRegistry } from '../subnet/etcd-registry';
import { version } from '../version';
import { configCheck, configGet, configSet, dockerOpts, leasesTable, Out } from './commands';
import { DaemonFlags, daemonFlags, daemonUsage } from './flags';

const io: Out = {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
};

function registryFor(f: DaemonFlags): EtcdRegistry {
  return new EtcdRegistry({
    endpoints: f.etcdEndpoints,
    prefix: f.etcdPrefix,
    cafile: f.etcdCafile,
    certfile: f.etcdCertfile,
    keyfile: f.etcdKeyfile,
    username: f.etcdUsername,
    password: f.etcdPassword,
  });
}

async function withRegistry(f: DaemonFlags, fn: (r: EtcdRegistry) => Promise<number>): Promise<number> {
  const r = registryFor(f);
  try {
    return await fn(r);
  } finally {
    r.close();
  }
}

/** sd_notify over NOTIFY_SOCKET; the native addon sends the datagram (node has no unix dgram). */
function notifier(log: Logger): (state: string) => void {
  const path = process.env.NOTIFY_SOCKET;
  if (!path) return () => undefined;
  return (state) => {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { sdNotify } = require('../dataplane/native') as typeof import('../dataplane/native');
      sdNotify(path, state);
    } catch (e) {
      log.warn('sd_notify failed', { socket: path, error: describeError(e) });
    }
  };
}

async function runDaemon(f: DaemonFlags): Promise<number> {
  // Reads the TLS files: an unreadable one is a flag error, reported before anything starts.
  const registry = registryFor(f);
  const log = createLogger({ verbosity: f.v, json: f.logJson });
  log.info('rudder starting', { version: version(), etcd: f.etcdEndpoints.join(','), prefix: f.etcdPrefix });
  const { createBackend } = await import('../backend');
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) return;
    log.info('shutting down', { signal: sig });
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const daemon = new Daemon(
    {
      etcdPrefix: f.etcdPrefix,
      subnetFile: f.subnetFile,
      ttlMs: f.subnetLeaseTtlMs,
      renewMarginMs: f.subnetLeaseRenewMarginMs,
      ipMasq: f.ipMasq,
      portFlag: f.port,
      metricsAddr: f.metricsAddr,
    },
    {
      registry,
      log,
      resolveIface: () => resolveExternalInterface(f.iface, f.publicIp),
      createBackend,
      notify: notifier(log),
      nft: runNft,
    },
  );
  try {
    await daemon.run(ac.signal);
    log.info('stopped');
    return 0;
  } catch (e) {
    log.error('fatal', { error: describeError(e), code: isRudderError(e) ? e.code : undefined });
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function run(argv: readonly string[]): Promise<number> {
  let parsed: ReturnType<typeof daemonFlags>;
  try {
    parsed = daemonFlags(argv, process.env);
  } catch (e) {
    io.err(`rudder: ${describeError(e)}`);
    io.err('');
    io.err(daemonUsage());
    return 2;
  }
  const { flags, rest } = parsed;
  if (flags.help) {
    io.out(daemonUsage());
    return 0;
  }
  if (flags.version) {
    io.out(version());
    return 0;
  }
  const [cmd, sub, ...args] = rest;
  try {
    switch (cmd) {
      case undefined:
        return await runDaemon(flags);
      case 'version':
        io.out(version());
        return 0;
      case 'leases':
        return await withRegistry(flags, (r) => leasesTable(r, io));
      case 'sandbox': {
        const { runSandbox } = await import('../sandbox');
        return await runSandbox(rest.slice(1), { out: process.stdout, err: io.err });
      }
      case 'docker-opts':
        return dockerOpts(rest.slice(1), flags.subnetFile, io);
      case 'cni-config': {
        const { cniConfigCommand } = await import('../cni/runner');
        return await cniConfigCommand(rest.slice(1), flags.subnetFile, io);
      }
      case 'config':
        switch (sub) {
          case 'check':
            return configCheck(args, io);
          case 'get':
            return await withRegistry(flags, (r) => configGet(r, flags.etcdPrefix, io));
          case 'set':
            return await withRegistry(flags, (r) => configSet(r, flags.etcdPrefix, args, io));
          default:
            io.err(`rudder: config ${sub ?? ''}: expected one of: config check FILE, config get, config set JSON|FILE [--if-absent]`);
            return 2;
        }
      default:
        io.err(`rudder: unknown command ${JSON.stringify(cmd)}: expected config, leases, sandbox, docker-opts, cni-config or version (or none, to run the daemon)`);
        io.err('');
        io.err(daemonUsage());
        return 2;
    }
  } catch (e) {
    io.err(`rudder: ${describeError(e)}`);
    if (!isRudderError(e, 'E_FLAG')) return 1;
    io.err('');
    io.err(daemonUsage());
    return 2;
  }
}

export function main(argv: readonly string[]): void {
  run(argv).then(
    (code) => {
      process.exitCode = code;
      // The etcd client and timers may hold the loop open after a subcommand.
      setImmediate(() => process.exit(code));
    },
    (e: unknown) => {
      io.err(`rudder: internal error: ${describeError(e)}`);
      process.exit(1);
    },
  );
}
