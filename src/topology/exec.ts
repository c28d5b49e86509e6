/**
 * Running external commands for the topology harness (`ip`, `etcd`, `ping`,
 * the daemon). Two shapes: `run` for short commands whose output we want, and
 * `ManagedProcess` for long-running ones we must be able to end by PID.
 *
 * Failures are `TopologyError`s that carry the command line, exit status and
 * stderr, because "ip failed" without the stderr is useless when a CI run
 * breaks at 3 a.m.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { RudderError, type ErrorCode } from '../errors';

export class TopologyError extends RudderError {
  readonly command: string | undefined;
  readonly exitCode: number | null | undefined;
  readonly stderr: string | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    details: { command?: string; exitCode?: number | null; stderr?: string; cause?: unknown } = {},
  ) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TopologyError';
    this.command = details.command;
    this.exitCode = details.exitCode;
    this.stderr = details.stderr;
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when a signal ended the command. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Return the result instead of throwing when the exit status is not 0. */
  allowFailure?: boolean;
  /** Error code of the thrown TopologyError. */
  errorCode?: ErrorCode;
}

/** Quotes an argv for messages so it can be pasted into a shell to reproduce. */
export function formatCommand(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w./:=,@+%-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function failure(argv: readonly string[], r: RunResult, code: ErrorCode): TopologyError {
  const cmd = formatCommand(argv);
  const status = r.signal ? `signal ${r.signal}` : `exit status ${r.code}`;
  const err = r.stderr.trim() || r.stdout.trim() || '(no output)';
  return new TopologyError(code, `command failed (${status}): ${cmd}: ${err}`, {
    command: cmd,
    exitCode: r.code,
    stderr: r.stderr,
  });
}

/** Runs a command to completion; rejects with a TopologyError on a non-zero exit. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new TopologyError('E_INTERNAL', 'run: empty command'));
  const code = opts.errorCode ?? 'E_INTERNAL';
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) =>
      reject(new TopologyError(code, `cannot run ${formatCommand(argv)}: ${e.message}`, { command: formatCommand(argv), cause: e })),
    );
    child.on('close', (exit, signal) => {
      const r: RunResult = {
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code: exit,
        signal,
      };
      if (r.code === 0 || opts.allowFailure) resolve(r);
      else reject(failure(argv, r, code));
    });
    // A command that does not read stdin must not get EPIPE'd into an unhandled error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * Synchronous variant, only for clean-up paths that run inside a process
 * 'exit' handler where nothing asynchronous can happen any more.
 */
export function runSync(argv: readonly string[]): RunResult {
  const [file, ...args] = argv;
  if (file === undefined) return { stdout: '', stderr: 'empty command', code: 1, signal: null };
  const r = spawnSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? (r.error ? r.error.message : ''),
    code: r.status,
    signal: r.signal,
  };
}

/** True while a process with this PID exists (and is not a zombie we own). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie still answers kill(0); it is dead for our purposes.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * `argv` wrapped so that the process dies with this one. setpriv arms the
 * parent-death signal, but only once it runs: a parent killed between fork and
 * that moment leaves an orphan (the kernel never fires the signal for a parent
 * that is already gone). So after arming it, a shell checks that its parent is
 * still us (the PID follows as $0) and otherwise exits instead of exec'ing the
 * program; either the parent died before the check (the check sees it) or after
 * (the signal fires). `exec` keeps the PID the program's own.
 */
export function dyingWithUs(argv: readonly string[]): string[] {
  return ['setpriv', '--pdeathsig', 'KILL', '--', 'sh', '-c', '[ "$PPID" = "$0" ] || exit 1; exec "$@"', String(process.pid), ...argv];
}

function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** stdout and stderr are appended to this file (created if missing). */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** Short name for messages ("etcd", "rudder h1"). */
  label: string;
  /**
   * Have the kernel SIGKILL the process when this Node process dies, even by
   * SIGKILL, so that a killed test run leaves no daemons behind (setpriv
   * --pdeathsig; the setting survives the exec into the real program).
   */
  dieWithParent?: boolean;
}

/**
 * A long-running child process, known by PID. `ip netns exec` execs in place
 * (no fork), so the PID we get is the PID of the program itself and signals
 * reach it directly.
 */
export class ManagedProcess {
  readonly pid: number;
  readonly label: string;
  readonly argv: readonly string[];
  readonly logFile: string;
  /** Resolves when the process has ended; never rejects. */
  readonly exited: Promise<Exit>;
  private exitInfo: Exit | null = null;
  private readonly child: ChildProcess;

  private constructor(child: ChildProcess, argv: readonly string[], opts: SpawnOptions) {
    if (child.pid === undefined) throw new TopologyError('E_INTERNAL', `no PID for ${opts.label}`);
    this.child = child;
    this.pid = child.pid;
    this.label = opts.label;
    this.argv = argv;
    this.logFile = opts.logFile;
    this.exited = new Promise<Exit>((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  /** Starts the command; resolves once it is running (rejects if it cannot be started at all). */
  static start(argv: readonly string[], opts: SpawnOptions): Promise<ManagedProcess> {
    const full = opts.dieWithParent === false ? [...argv] : dyingWithUs(argv);
    const [file, ...args] = full;
    if (file === undefined) return Promise.reject(new TopologyError('E_INTERNAL', 'spawn: empty command'));
    const fd = fs.openSync(opts.logFile, 'a');
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['ignore', fd, fd], detached: false });
      } catch (e) {
        fs.closeSync(fd);
        reject(new TopologyError('E_INTERNAL', `cannot start ${opts.label}: ${formatCommand(full)}: ${String(e)}`, { cause: e }));
        return;
      }
      fs.closeSync(fd); // the child holds its own copy
      child.once('error', (e) =>
        reject(new TopologyError('E_INTERNAL', `cannot start ${opts.label}: ${formatCommand(full)}: ${e.message}`, { command: formatCommand(full), cause: e })),
      );
      child.once('spawn', () => resolve(new ManagedProcess(child, full, opts)));
    });
  }

  get running(): boolean {
    return this.exitInfo === null;
  }

  get exit(): Exit | null {
    return this.exitInfo;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) signalPid(this.pid, sig);
  }

  /** Simulates a crash: SIGKILL, then waits for the exit. */
  async kill(): Promise<Exit> {
    this.signal('SIGKILL');
    return this.exited;
  }

  /**
   * Asks politely (SIGTERM), then insists (SIGKILL) after `graceMs`. The grace
   * period bounds clean-up time; it is not a check on how fast the program is.
   */
  async stop(graceMs = 10_000): Promise<Exit> {
    if (!this.running) return this.exited;
    this.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    });
    const first = await Promise.race([this.exited, late]);
    if (timer) clearTimeout(timer);
    if (first === 'late') this.signal('SIGKILL');
    return this.exited;
  }

  /** Sync SIGKILL for 'exit' handlers. */
  killSync(): void {
    if (this.running) signalPid(this.pid, 'SIGKILL');
  }

  /** The last `maxBytes` of the log, for error messages. */
  logTail(maxBytes = 4000): string {
    return tailFile(this.logFile, maxBytes);
  }

  /** Stops the Node-side bookkeeping from keeping the event loop alive. */
  unref(): void {
    this.child.unref();
  }
}

export function tailFile(file: string, maxBytes = 4000): string {
  try {
    const st = fs.statSync(file);
    const start = Math.max(0, st.size - maxBytes);
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(st.size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}
