/**
 * The shape of a `bin/rudder` command line: which command it names, and
 * which flags go to that command and which to the daemon's table.
 *
 * Every command takes its own flags before or after its name
 * (`rudder -etcd-prefix=/x leases` and `rudder leases -etcd-prefix=/x` mean
 * the same). After the name, a flag the command does not take is an error
 * (exit 2 with that command's usage), never silently ignored. Before the
 * name, the daemon's flags are still accepted as they always were (a
 * command ignores those it does not take), so a wrapper that puts the
 * daemon's options in front of any command keeps working.
 *
 * Pure: no I/O. The sandbox's and cni-config's tables are loaded only when
 * the command line needs them (the sandbox's pulls in the topology code).
 */
import { RudderError } from '../errors';
import { closest, flagErr, flagNameOf, formatUsage, HELP_FLAG, isFlagArg, lexFlags, parseFlags, type FlagSpec, type ParsedFlags } from '../util/flags';
import { DAEMON_FLAGS, ETCD_FLAGS, KUBE_FLAGS } from './flags';

export interface CommandSpec {
  /** The command's words: `['config', 'set']`. */
  words: readonly string[];
  /** For the daemon's usage: `config set JSON|FILE [--if-absent]`. */
  synopsis: string;
  summary: string;
  /** Every flag the command takes, before or after its name. */
  flags(): readonly FlagSpec[];
  usage(): string;
}

/** The `config set` flag the daemon does not have. */
export const IF_ABSENT_FLAG: FlagSpec = { name: 'if-absent', kind: 'bool', env: false, help: 'write only if no config is stored yet; an existing one is left unchanged' };

function simple(words: string[], operands: string, summary: string, flags: readonly FlagSpec[]): CommandSpec {
  const name = words.join(' ');
  const synopsis = operands ? `${name} ${operands}` : name;
  return {
    words,
    synopsis,
    summary,
    flags: () => flags,
    usage: () => formatUsage(`Usage: rudder ${synopsis} [flags]\n\n${summary[0]?.toUpperCase()}${summary.slice(1)}.`, flags),
  };
}

/* eslint-disable @typescript-eslint/no-require-imports -- lazy: only when the command line names these commands */
function sandboxFlagsModule(): typeof import('../sandbox/flags') {
  return require('../sandbox/flags') as typeof import('../sandbox/flags');
}
function cniRunnerModule(): typeof import('../cni/runner') {
  return require('../cni/runner') as typeof import('../cni/runner');
}
function commandsModule(): typeof import('./commands') {
  return require('./commands') as typeof import('./commands');
}
function peersModule(): typeof import('./peers') {
  return require('./peers') as typeof import('./peers');
}
/* eslint-enable @typescript-eslint/no-require-imports */

export const COMMANDS: readonly CommandSpec[] = [
  simple(['config', 'check'], 'FILE', 'validate a network config file offline and print it with its defaults', [HELP_FLAG]),
  simple(['config', 'get'], '', 'print the network config stored in etcd', [...ETCD_FLAGS, HELP_FLAG]),
  {
    ...simple(['config', 'set'], 'JSON|FILE', 'validate and store the network config in etcd (--if-absent: only if none is stored yet)', [...ETCD_FLAGS, IF_ABSENT_FLAG, HELP_FLAG]),
    synopsis: 'config set JSON|FILE [--if-absent]',
  },
  simple(['leases'], '', 'list the subnet leases in etcd (with -kube-subnet-mgr: from the Nodes)', [...ETCD_FLAGS, ...KUBE_FLAGS, HELP_FLAG]),
  {
    words: ['peers'],
    synopsis: 'peers [-wireguard-device=NAME] [-json]',
    summary: 'list this host\'s WireGuard peers (wireguard backend): endpoint, allowed IPs, latest handshake, bytes',
    flags: () => peersModule().PEERS_FLAGS,
    usage: () => peersModule().peersUsage(),
  },
  {
    words: ['sandbox'],
    synopsis: 'sandbox [--hosts N] [--backend B] [--check]',
    summary: 'a whole cluster on this machine in network namespaces (root; see rudder sandbox -help)',
    flags: () => sandboxFlagsModule().SANDBOX_FLAGS,
    usage: () => sandboxFlagsModule().sandboxUsage(),
  },
  {
    words: ['docker-opts'],
    synopsis: 'docker-opts [-subnet-file=FILE] [-format=args|env]',
    summary: 'print dockerd options (--bip, --mtu) for this host\'s subnet file',
    flags: () => commandsModule().DOCKER_OPTS_FLAGS,
    usage: () => commandsModule().dockerOptsUsage(),
  },
  {
    words: ['cni-config'],
    synopsis: 'cni-config [-out DIR] [-watch] [-subnet-file=FILE]',
    summary: 'write a CNI conflist (bridge, host-local, portmap) for this host\'s subnet; -watch keeps it current',
    flags: () => cniRunnerModule().CNI_FLAGS,
    usage: () => cniRunnerModule().cniConfigUsage(),
  },
  simple(['version'], '', 'print the version', [HELP_FLAG]),
];

export function daemonUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.synopsis.length));
  const cmds = COMMANDS.map((c) => `  ${c.synopsis.padEnd(width)}  ${c.summary}`);
  return (
    formatUsage('Usage: rudder [flags] [command]\n\nWithout a command, runs the daemon. Flags also come from RUDDER_<NAME> environment variables\n(e.g. RUDDER_ETCD_PREFIX); the command line wins.', DAEMON_FLAGS) +
    ['', 'Commands:', ...cmds, '', 'A command takes its flags before or after its name; rudder COMMAND -help lists them.', ''].join('\n')
  );
}

/** A flag error that belongs to a command: printed as `rudder <command>: ...` with that command's usage. */
export class CommandFlagError extends RudderError {
  constructor(
    readonly command: CommandSpec,
    error: RudderError,
  ) {
    super('E_FLAG', error.message);
  }
}

export type CommandLine =
  /** No command, or one that is not known: the whole argv is the daemon's (as it always was). */
  | { command: null; daemonArgv: string[] }
  | {
      command: CommandSpec;
      /** Always empty: a command takes only its own flags, before or after its name. */
      daemonArgv: string[];
      /** The command's own arguments: its flags from before the name, then everything after it. */
      args: string[];
    };

/**
 * Finds the command and sorts the flags before its name. Throws a
 * CommandFlagError for a flag before the name that the command does not take.
 */
export function splitCommandLine(argv: readonly string[], commands: readonly CommandSpec[] = COMMANDS): CommandLine {
  // Where the leading flags end. Which flags take a value decides that, so
  // look names up in the daemon's table, then in every command's.
  const daemonByName = new Map<string, FlagSpec>();
  for (const s of DAEMON_FLAGS) for (const n of [s.name, ...(s.aliases ?? [])]) daemonByName.set(n, s);
  let others: Map<string, FlagSpec> | null = null;
  const lookup = (name: string): FlagSpec | undefined => {
    const d = daemonByName.get(name);
    if (d) return d;
    if (!others) {
      others = new Map();
      for (const c of commands) for (const s of c.flags()) for (const n of [s.name, ...(s.aliases ?? [])]) others.set(n, s);
    }
    return others.get(name);
  };
  let i = 0;
  let nameAt = -1;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      nameAt = i + 1;
      break;
    }
    if (!isFlagArg(arg)) {
      nameAt = i;
      break;
    }
    const spec = lookup(flagNameOf(arg));
    if (spec && spec.kind !== 'bool' && !arg.includes('=')) i++;
  }
  const command = nameAt < 0 ? undefined : commands.find((c) => c.words.every((w, k) => argv[nameAt + k] === w));
  if (!command) return { command: null, daemonArgv: [...argv] };

  const own = command.flags();
  // Before the name as after it: a flag the command does not take is an error.
  let lexed: ReturnType<typeof lexFlags>;
  try {
    lexed = lexFlags(own, argv.slice(0, i), { unknown: (_name, where) => notTaken(command, where) });
  } catch (e) {
    throw e instanceof RudderError && e.code === 'E_FLAG' ? new CommandFlagError(command, e) : e;
  }
  const args: string[] = [];
  const daemonArgv: string[] = [];
  for (const t of lexed.flags) (own.includes(t.spec) ? args : daemonArgv).push(...t.argv);
  args.push(...argv.slice(nameAt + command.words.length));
  return { command, daemonArgv, args };
}

/** The error for a flag that a command does not take. */
export function notTaken(command: CommandSpec, where: string): RudderError {
  const name = command.words.join(' ');
  const flags = command.flags();
  const hint = closest(where.replace(/^-+/, ''), flags);
  const takes = flags.map((s) => `-${s.name}`).join(', ');
  return flagErr(`${where} is not a flag of "rudder ${name}"${hint === undefined ? '' : ` (did you mean -${hint}?)`}: it takes ${takes}`);
}

/**
 * Parses the arguments of a command whose flags the CLI handles itself
 * (config check|get|set, leases, version): flags anywhere (GNU style) until
 * `--`, a flag the command does not take is an error.
 */
export function commandFlags(
  command: CommandSpec,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParsedFlags {
  try {
    return parseFlags(command.flags(), args, env, { interspersed: true, unknown: (_name, where) => notTaken(command, where) });
  } catch (e) {
    throw e instanceof RudderError && e.code === 'E_FLAG' ? new CommandFlagError(command, e) : e;
  }
}
