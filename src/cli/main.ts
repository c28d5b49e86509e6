/**
 * `bin/rudder`: the daemon's flags (Go- or GNU-style, environment fallback)
 * and an optional command, which takes its own flags before or after its
 * name (./commandline.ts); with no command, the daemon runs until
 * SIGINT/SIGTERM (SIGHUP rotates the wireguard backend's key). Flag errors exit 2 with the usage of the daemon or of the
 * command; other failures exit 1 with one clear line.
 */
import { parseConfig } from '../config';
import { Daemon } from '../daemon';
import { describeError, isRudderError, RudderError } from '../errors';
import { resolveExternalInterface, resolvePublicIpv6 } from '../iface';
import { runNft } from '../ipmasq';
import { createLogger, Logger } from '../log';
import { EtcdRegistry } from '../subnet/etcd-registry';
import { etcdSource, type SubnetSource } from '../subnet/source';
import { hostname } from 'node:os';
import { sdNotify } from '../systemd/notify';
import { version } from '../version';
import { commandFlags, CommandFlagError, daemonUsage, splitCommandLine, type CommandLine, type CommandSpec } from './commandline';
import type { Out } from './commands';
import { DEFAULT_KUBE_ANNOTATION_PREFIX, DEFAULT_WIREGUARD_KEY_FILE, DaemonFlags, daemonFlags, etcdFlags, type EtcdFlags } from './flags';
import type { ParsedFlags } from '../util/flags';

const io: Out = {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
};

function registryFor(f: EtcdFlags): EtcdRegistry {
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

async function withRegistry(f: EtcdFlags, fn: (r: EtcdRegistry) => Promise<number>): Promise<number> {
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
      sdNotify(path, state);
    } catch (e) {
      log.warn('sd_notify failed', { socket: path, error: describeError(e) });
    }
  };
}

/** Kubernetes mode: this node's name (the DaemonSet sets NODE_NAME from spec.nodeName). */
function nodeName(): string {
  const n = process.env.NODE_NAME;
  return n !== undefined && n !== '' ? n : hostname();
}

async function runDaemon(f: DaemonFlags): Promise<number> {
  const log = createLogger({ verbosity: f.v, json: f.logJson });
  let source: SubnetSource;
  if (f.kubeSubnetMgr) {
    log.info('rudder starting', { version: version(), mode: 'kubernetes', node: nodeName(), netConf: f.netConfigPath });
    const { kubeSource } = await import('../subnet/kube/source');
    // Reads the kubeconfig (or the service account): an unusable one is reported before anything starts.
    source = kubeSource({
      kubeconfigFile: f.kubeconfigFile,
      apiUrl: f.kubeApiUrl,
      annotationPrefix: f.kubeAnnotationPrefix,
      netConfigPath: f.netConfigPath,
      nodeName: nodeName(),
      log,
    });
  } else {
    // Reads the TLS files: an unreadable one is a flag error, reported before anything starts.
    source = etcdSource(registryFor(f), f.etcdPrefix);
    log.info('rudder starting', { version: version(), etcd: f.etcdEndpoints.join(','), prefix: f.etcdPrefix });
  }
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
      subnetFile: f.subnetFile,
      ttlMs: f.subnetLeaseTtlMs,
      renewMarginMs: f.subnetLeaseRenewMarginMs,
      ipMasq: f.ipMasq,
      portFlag: f.port,
      wireguardKeyFile: f.wireguardKeyFile,
      metricsAddr: f.metricsAddr,
      hostId: f.hostId,
      flannelSubnetFile: f.flannelSubnetFile,
    },
    {
      source,
      log,
      resolveIface: (o) => resolveExternalInterface(f.iface, f.publicIp, o),
      resolvePublicIpv6: (ext) => resolvePublicIpv6(ext.name, f.publicIpv6),
      createBackend,
      notify: notifier(log),
      nft: runNft,
    },
  );
  const onHup = (): void => {
    log.info('SIGHUP: rotating the key');
    daemon.rotateKey().then(
      () => undefined,
      (e: unknown) => log.error('SIGHUP: key rotation failed; the old key keeps running', { code: isRudderError(e) ? e.code : undefined, error: describeError(e) }),
    );
  };
  process.on('SIGHUP', onHup);
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
    process.off('SIGHUP', onHup);
  }
}

function flagError(e: unknown, usage: string, prefix = 'rudder'): number {
  io.err(`${prefix}: ${e instanceof CommandFlagError ? e.message : describeError(e)}`);
  io.err('');
  io.err(usage);
  return 2;
}

export async function run(argv: readonly string[]): Promise<number> {
  let line: CommandLine;
  let parsed: ReturnType<typeof daemonFlags>;
  try {
    line = splitCommandLine(argv);
  } catch (e) {
    if (e instanceof CommandFlagError) return flagError(e, e.command.usage(), `rudder ${e.command.words.join(' ')}`);
    return flagError(e, daemonUsage());
  }
  try {
    parsed = daemonFlags(line.daemonArgv, process.env);
  } catch (e) {
    return flagError(e, daemonUsage());
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
  if (line.command === null) return runNamed(rest, flags);
  const command = line.command;
  try {
    return await runCommand(command, line.args, flags);
  } catch (e) {
    if (!isRudderError(e, 'E_FLAG')) {
      io.err(`rudder: ${describeError(e)}`);
      return 1;
    }
    return flagError(e, command.usage(), `rudder ${command.words.join(' ')}`);
  }
}

/** A command whose flags the CLI parses (config, leases, version) or that parses its own (the rest). */
async function runCommand(command: CommandSpec, args: string[], daemon: DaemonFlags): Promise<number> {
  const name = command.words.join(' ');
  // Loaded here, not at the top: the daemon never runs these (issue 17: what it loads stays resident).
  const { configCheck, configGet, configSet, dockerOpts, leasesTable } = await import('./commands');
  if (name === 'sandbox') {
    const { runSandbox } = await import('../sandbox');
    return await runSandbox(args, { out: process.stdout, err: (s) => io.err(s) });
  }
  if (name === 'docker-opts') return dockerOpts(args, daemon.subnetFile, io);
  if (name === 'cni-config') {
    const { cniConfigCommand } = await import('../cni/runner');
    return await cniConfigCommand(args, daemon.subnetFile, io);
  }
  const p = commandFlags(command, args, process.env);
  if (p.values.get('help') === true) {
    io.out(command.usage());
    return 0;
  }
  const operands = p.rest;
  const noOperands = (): void => {
    if (operands.length > 0) throw new CommandFlagError(command, new RudderError('E_FLAG', `unexpected argument ${JSON.stringify(operands[0])}: "rudder ${name}" takes only flags`));
  };
  switch (name) {
    case 'version':
      noOperands();
      io.out(version());
      return 0;
    case 'leases': {
      noOperands();
      if (p.values.get('kube-subnet-mgr') === true) return await kubeLeases(p);
      const etcd = etcdFlags(p);
      return await withRegistry(etcd, (r) => leasesTable(r, io));
    }
    case 'peers': {
      noOperands();
      const { peersCommand } = await import('./peers');
      return await peersCommand(p, io, { env: process.env, backendType: () => networkBackend(p) });
    }
    case 'config check':
      return configCheck(operands, io);
    case 'config get': {
      noOperands();
      const etcd = etcdFlags(p);
      return await withRegistry(etcd, (r) => configGet(r, etcd.etcdPrefix, io));
    }
    case 'config set': {
      const etcd = etcdFlags(p);
      return await withRegistry(etcd, (r) => configSet(r, etcd.etcdPrefix, operands, p.values.get('if-absent') === true, io));
    }
    case 'wireguard rotate-key': {
      noOperands();
      const file = p.values.get('wireguard-key-file');
      const { requestRotate } = await import('../backend/wireguard/control');
      const pub = await requestRotate(typeof file === 'string' && file !== '' ? file : DEFAULT_WIREGUARD_KEY_FILE);
      io.out(pub);
      io.err('key rotated: the new public key is published in the lease; peers follow it');
      return 0;
    }
    default:
      throw new RudderError('E_INTERNAL', `command ${name} has no handler`);
  }
}

/** The network config's Backend.Type from etcd for `rudder peers`' explanation; null when etcd does not answer within 3 s. */
async function networkBackend(p: ParsedFlags): Promise<string | null> {
  let etcd: EtcdFlags;
  try {
    etcd = etcdFlags(p);
  } catch {
    return null;
  }
  const r = registryFor(etcd);
  let timer: NodeJS.Timeout | undefined;
  try {
    const text = await Promise.race([r.getConfig(), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 3000)))]);
    return text === null ? null : parseConfig(text).backend.Type;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    r.close();
  }
}

/** `rudder leases -kube-subnet-mgr`: the same table, from the Nodes (every Node is a reservation). */
async function kubeLeases(p: ParsedFlags): Promise<number> {
  const { leasesTable } = await import('./commands');
  const { KubeClient } = await import('../subnet/kube/client');
  const { KubePeers, kubeConnection } = await import('../subnet/kube/source');
  const opt = (n: string): string | undefined => {
    const v = p.values.get(n);
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const prefix = opt('kube-annotation-prefix') ?? DEFAULT_KUBE_ANNOTATION_PREFIX;
  const peers = new KubePeers(new KubeClient(kubeConnection({ kubeconfigFile: opt('kubeconfig-file'), apiUrl: opt('kube-api-url') })), prefix, '', '');
  peers.useConfig(null); // no config here: each Node with the families it has
  try {
    return await leasesTable({ listLeases: () => peers.listLeases(), timeToLive: async () => null }, io);
  } finally {
    peers.close();
  }
}

/** No known command: the daemon, or a word that is not a command. */
async function runNamed(rest: readonly string[], flags: DaemonFlags): Promise<number> {
  const [cmd, sub] = rest;
  try {
    switch (cmd) {
      case undefined:
        return await runDaemon(flags);
      case 'config':
        io.err(`rudder: config ${sub ?? ''}: expected one of: config check FILE, config get, config set JSON|FILE [--if-absent]`);
        return 2;
      case 'wireguard':
        io.err(`rudder: wireguard ${sub ?? ''}: expected wireguard rotate-key`);
        return 2;
      default:
        io.err(`rudder: unknown command ${JSON.stringify(cmd)}: expected config, leases, peers, sandbox, docker-opts, cni-config, wireguard or version (or none, to run the daemon)`);
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
