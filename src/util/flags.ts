/**
 * A generic, table-driven command-line flag parser: Go- and GNU-style
 * spellings (`-port=1`, `--port 1`), the `RUDDER_<NAME>` environment
 * fallback, Go durations, usage text. Shared by the CLI, `cni-config` and
 * the sandbox; the daemon's own table lives in cli/flags.ts.
 *
 * Pure: no I/O, no process globals. Errors are RudderError('E_FLAG') with a
 * one-line message that names the flag, the value and the expected form; the
 * caller prints "rudder: <message>" plus usage and exits with status 2.
 */
import { RudderError } from '../errors';

export type FlagKind = 'string' | 'int' | 'bool' | 'duration' | 'list';

export interface FlagSpec {
  /** Canonical name, without dashes: `etcd-prefix`. */
  name: string;
  aliases?: string[];
  kind: FlagKind;
  /** In the flag's own command-line syntax (`"24h"`, `"8285"`, `"a,b"`); parsed like a given value. */
  default?: string;
  help: string;
  /** Read `RUDDER_<NAME>` from the environment (default true). */
  env?: boolean;
  /** Never echo the value (errors, usage). */
  secret?: boolean;
  /** Bounds for int (the value) and duration (milliseconds). */
  min?: number;
  max?: number;
}

export type FlagValue = string | number | boolean | string[] | undefined;

export interface ParsedFlags {
  /** Every spec's canonical name → its value (command line, else environment, else default). */
  values: Map<string, FlagValue>;
  /** Canonical names set on the command line or in the environment (not by a default). */
  given: Set<string>;
  /** Where each given flag's value came from (its last spelling on the command line, or the variable). */
  sources: Map<string, FlagSource>;
  /** Arguments after the flags (Go style: the subcommand and its own arguments), or every operand (interspersed). */
  rest: string[];
}

/** How the user spelled a flag's source (`--port`, `RUDDER_PORT`) and the raw text there. */
export interface FlagSource {
  where: string;
  raw: string;
}

/** `-help`, `-h`: every command takes it; never from the environment. */
export const HELP_FLAG: FlagSpec = { name: 'help', aliases: ['h'], kind: 'bool', env: false, help: 'print this help and exit' };

const ENV_PREFIX = 'RUDDER_';

export function envName(flagName: string): string {
  return ENV_PREFIX + flagName.toUpperCase().replace(/-/g, '_');
}

export function flagErr(message: string): RudderError {
  return new RudderError('E_FLAG', message);
}

// ---------------------------------------------------------------- durations

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign, what Go prints
  '\u03bcs': 1e-3, // U+03BC Greek mu, what people type (escaped: it keeps the compiled file Latin-1, a one-byte string in V8)
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
// Longest unit first so "ms" is not read as "m" followed by garbage.
const DURATION_PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|\u03bcs|ms|s|m|h)/y;

/**
 * Go's time.ParseDuration syntax ("24h", "1h30m", "1.5s", "-2m"), in
 * milliseconds. Unlike Go, a bare number (even "0") is rejected: a unit-less
 * value is almost always someone expecting seconds or minutes.
 */
export function parseDuration(s: string): number | null {
  let i = 0;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    i = 1;
  }
  if (i >= s.length) return null;
  let total = 0;
  while (i < s.length) {
    DURATION_PART.lastIndex = i;
    const m = DURATION_PART.exec(s);
    if (!m) return null;
    const num = Number(m[1]);
    const unit = DURATION_UNITS_MS[m[2] as string];
    if (unit === undefined || !Number.isFinite(num)) return null;
    total += num * unit;
    i = DURATION_PART.lastIndex;
  }
  // Fractions of ms ("1.1s") pick up float noise; nanoseconds are the finest unit.
  const ms = Math.round(total * 1e6) / 1e6;
  if (!Number.isFinite(ms)) return null;
  return sign * ms === 0 ? 0 : sign * ms; // no -0
}

/** "90000" → "1m30s": for messages that echo a parsed duration. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.abs(ms);
  let out = ms < 0 ? '-' : '';
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  if (h) out += `${h}h`;
  if (m) out += `${m}m`;
  if (rest) out += rest >= 1000 ? `${rest / 1000}s` : `${rest}ms`;
  return out;
}

// ------------------------------------------------------------ value parsing

const TRUE = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

/** What a valid value looks like, for "expected ..." in messages. */
export function expectedForm(spec: FlagSpec): string {
  switch (spec.kind) {
    case 'int': {
      const { min, max } = spec;
      if (min !== undefined && max !== undefined) return `an integer between ${min} and ${max}`;
      if (min !== undefined) return `an integer of at least ${min}`;
      if (max !== undefined) return `an integer of at most ${max}`;
      return 'an integer';
    }
    case 'bool':
      return 'true or false (or 1 or 0)';
    case 'duration': {
      const base = 'a duration with a unit such as "24h", "1h30m", "90s" or "500ms"';
      const { min, max } = spec;
      if (min !== undefined && max !== undefined) return `${base}, between ${formatDuration(min)} and ${formatDuration(max)}`;
      if (min !== undefined) return `${base}, of at least ${formatDuration(min)}`;
      if (max !== undefined) return `${base}, of at most ${formatDuration(max)}`;
      return base;
    }
    case 'list':
      return 'a comma-separated list';
    case 'string':
      return 'a value';
  }
}

function shown(spec: FlagSpec, raw: string): string {
  return spec.secret ? '"(hidden)"' : JSON.stringify(raw);
}

/** `where` is how the user spelled the source: `-port` or `RUDDER_PORT`. */
function convert(spec: FlagSpec, raw: string, where: string): Exclude<FlagValue, undefined> {
  const wrong = (): RudderError => flagErr(`${where}=${shown(spec, raw)}: expected ${expectedForm(spec)}`);
  switch (spec.kind) {
    case 'string':
      return raw;
    case 'bool':
      if (TRUE.has(raw)) return true;
      if (FALSE.has(raw)) return false;
      throw wrong();
    case 'int': {
      if (!/^[+-]?\d+$/.test(raw)) throw wrong();
      const n = Number(raw);
      if (!Number.isSafeInteger(n)) throw wrong();
      if (spec.min !== undefined && n < spec.min) throw wrong();
      if (spec.max !== undefined && n > spec.max) throw wrong();
      return n;
    }
    case 'duration': {
      const ms = parseDuration(raw);
      if (ms === null) throw wrong();
      if (spec.min !== undefined && ms < spec.min) throw wrong();
      if (spec.max !== undefined && ms > spec.max) throw wrong();
      return ms;
    }
    case 'list': {
      const items = raw.split(',').map((x) => x.trim()).filter((x) => x !== '');
      if (items.length === 0) throw wrong();
      return items;
    }
  }
}

// ------------------------------------------------------------------ parsing

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const del = (prev[j] ?? 0) + 1;
      const ins = (cur[j - 1] ?? 0) + 1;
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(del, ins, sub));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The known flag name nearest to a mistyped one, if any is near enough to be a likely intent. */
export function closest(name: string, specs: readonly FlagSpec[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const s of specs) {
    for (const n of [s.name, ...(s.aliases ?? [])]) {
      // A known name that starts with what was typed (`-etcd-end`) is the
      // likeliest intent, whatever the edit distance says.
      const prefix = Math.min(n.length, name.length) >= 2 && (n.startsWith(name) || name.startsWith(n));
      const score = prefix ? Math.abs(n.length - name.length) * 0.1 : levenshtein(name, n);
      if (score < bestScore) {
        bestScore = score;
        best = n;
      }
    }
  }
  return bestScore < name.length && bestScore <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function buildIndex(specs: readonly FlagSpec[]): Map<string, FlagSpec> {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    for (const n of [s.name, ...(s.aliases ?? [])]) {
      // A duplicate is a programming error in a table, not a user error.
      if (byName.has(n)) throw new RudderError('E_INTERNAL', `flag table: -${n} defined twice`);
      byName.set(n, s);
    }
  }
  return byName;
}

export interface FlagToken {
  spec: FlagSpec;
  /** How the user spelled the flag: `-port`, `--etcd-endpoints`. */
  where: string;
  /** The value as written (a bare boolean: "true"). */
  raw: string;
  value: Exclude<FlagValue, undefined>;
  /** The arguments it took: one, or two for `-name value`. */
  argv: string[];
}

export interface LexOptions {
  /**
   * GNU style: flags may come after operands (`config set FILE --if-absent`),
   * until `--`. Default: Go style, the first operand ends the flags.
   */
  interspersed?: boolean;
  /** The error for a flag the table does not know (default: "unknown flag", with a suggestion). */
  unknown?: (name: string, where: string) => RudderError;
}

/** A flag-shaped argument: `-x`, `--x=1`; not `-` alone and not `--`. */
export function isFlagArg(arg: string): boolean {
  return arg.length >= 2 && arg.startsWith('-') && arg !== '--';
}

/** The name in a flag argument: `--etcd-prefix=/x` → `etcd-prefix`. */
export function flagNameOf(arg: string): string {
  const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
  const eq = body.indexOf('=');
  return eq < 0 ? body : body.slice(0, eq);
}

/**
 * Splits arguments into flags (each converted and checked against its spec,
 * in order, so the first bad argument is the one reported) and operands.
 */
export function lexFlags(
  specs: readonly FlagSpec[],
  argv: readonly string[],
  opts: LexOptions = {},
): { flags: FlagToken[]; operands: string[] } {
  const byName = buildIndex(specs);
  const flags: FlagToken[] = [];
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (!isFlagArg(arg)) {
      // "-" alone is an operand, as in Go.
      if (opts.interspersed) {
        operands.push(arg);
        continue;
      }
      operands.push(...argv.slice(i));
      break;
    }
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    const dashes = arg.startsWith('--') ? '--' : '-';
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === '' || name.startsWith('-')) {
      throw flagErr(`bad flag syntax: ${JSON.stringify(arg)}: expected -name, -name=value or -name value`);
    }
    const spec = byName.get(name);
    const where = dashes + name;
    if (!spec) {
      if (opts.unknown) throw opts.unknown(name, where);
      const hint = closest(name, specs);
      throw flagErr(`unknown flag ${where}${hint === undefined ? '' : ` (did you mean -${hint}?)`}`);
    }

    let raw: string;
    const taken = [arg];
    if (eq >= 0) {
      raw = body.slice(eq + 1);
    } else if (spec.kind === 'bool') {
      // Go semantics: a bare boolean never consumes the next argument, so
      // `-ip-masq config get` still sees the subcommand.
      raw = 'true';
    } else {
      const next = argv[i + 1];
      if (next === undefined) {
        throw flagErr(`${where}: missing value: expected ${expectedForm(spec)}`);
      }
      if (isFlagArg(next) && byName.has(flagNameOf(next))) {
        // Almost always a forgotten value, not a value that looks like a flag.
        throw flagErr(`${where}: missing value (next argument ${JSON.stringify(next)} is a flag): expected ${expectedForm(spec)}; write ${where}=VALUE for a value starting with "-"`);
      }
      raw = next;
      taken.push(next);
      i++;
    }
    flags.push({ spec, where, raw, value: convert(spec, raw, where), argv: taken });
  }
  return { flags, operands };
}

/**
 * Every spec's value from the lexed flags, else `RUDDER_<NAME>` (empty
 * counts as unset, so `RUDDER_PUBLIC_IP=` in a unit file is harmless), else
 * the spec's default. A list flag repeated on the command line accumulates;
 * otherwise the last occurrence wins.
 */
export function resolveFlags(
  specs: readonly FlagSpec[],
  flags: readonly FlagToken[],
  env: Readonly<Record<string, string | undefined>>,
): Omit<ParsedFlags, 'rest'> {
  const values = new Map<string, FlagValue>();
  const given = new Set<string>();
  const sources = new Map<string, FlagSource>();
  for (const t of flags) {
    const name = t.spec.name;
    const prev = values.get(name);
    if (t.spec.kind === 'list' && sources.has(name) && Array.isArray(prev) && Array.isArray(t.value)) {
      values.set(name, [...prev, ...t.value]);
    } else {
      values.set(name, t.value);
    }
    sources.set(name, { where: t.where, raw: t.raw });
    given.add(name);
  }
  for (const spec of specs) {
    if (given.has(spec.name)) continue;
    if (spec.env !== false) {
      // The canonical name's variable wins over an alias's.
      for (const n of [spec.name, ...(spec.aliases ?? [])]) {
        const ev = envName(n);
        const raw = env[ev];
        if (raw === undefined || raw === '') continue;
        values.set(spec.name, convert(spec, raw, ev));
        sources.set(spec.name, { where: ev, raw });
        given.add(spec.name);
        break;
      }
      if (given.has(spec.name)) continue;
    }
    if (spec.default !== undefined) {
      values.set(spec.name, convert(spec, spec.default, `-${spec.name} (default)`));
    } else if (spec.kind === 'bool') {
      values.set(spec.name, false);
    } else {
      values.set(spec.name, undefined);
    }
  }
  return { values, given, sources };
}

/**
 * Parses flags until the first non-flag argument (Go semantics; with
 * `interspersed`, GNU semantics), `--`, or the end; see resolveFlags for
 * where values come from.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  opts: LexOptions = {},
): ParsedFlags {
  const { flags, operands } = lexFlags(specs, argv, opts);
  return { ...resolveFlags(specs, flags, env), rest: operands };
}

// -------------------------------------------------------------------- usage

function metavar(kind: FlagKind): string {
  switch (kind) {
    case 'string':
      return 'STRING';
    case 'int':
      return 'INT';
    case 'bool':
      return '';
    case 'duration':
      return 'DURATION';
    case 'list':
      return 'LIST';
  }
}

/** Go-style usage: one entry per flag with its aliases, default and variable. */
export function formatUsage(title: string, specs: readonly FlagSpec[]): string {
  const lines = [title, '', 'Flags:'];
  for (const s of specs) {
    const names = [s.name, ...(s.aliases ?? [])].map((n) => `-${n}`).join(', ');
    const mv = metavar(s.kind);
    lines.push(`  ${names}${mv ? ` ${mv}` : ''}`);
    const extra: string[] = [];
    if (s.default !== undefined && !s.secret) extra.push(`default ${JSON.stringify(s.default)}`);
    if (s.env !== false) extra.push(`env ${envName(s.name)}`);
    lines.push(`        ${s.help}${extra.length ? ` (${extra.join('; ')})` : ''}`);
  }
  return lines.join('\n') + '\n';
}

