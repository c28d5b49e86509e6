/**
 * Logging: one line per event. Human-readable by default
 * (`2026-11-22T10:00:00.000Z info  lease acquired subnet=10.0.5.0/24`),
 * JSON lines on request. Verbosity 1 adds data-path messages.
 */
export type Level = 'error' | 'warn' | 'info' | 'debug';
export type Fields = Record<string, unknown>;

export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  /** Shown with -v=1 or more. */
  debug(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  readonly verbosity: number;
}

export interface LoggerOptions {
  verbosity?: number;
  json?: boolean;
  write?: (line: string) => void;
  now?: () => Date;
}

function fmtValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === 'string') return /^[\w./:,@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return JSON.stringify(v);
}

export function createLogger(opts: LoggerOptions = {}, base: Fields = {}): Logger {
  const verbosity = opts.verbosity ?? 0;
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const now = opts.now ?? (() => new Date());
  const emit = (level: Level, msg: string, fields?: Fields): void => {
    if (level === 'debug' && verbosity < 1) return;
    const all: Fields = { ...base, ...fields };
    if (opts.json) {
      const obj: Fields = { time: now().toISOString(), level, msg };
      for (const [k, v] of Object.entries(all)) obj[k] = v instanceof Error ? v.message : v;
      write(JSON.stringify(obj));
    } else {
      const kv = Object.entries(all)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${fmtValue(v)}`)
        .join(' ');
      write(`${now().toISOString()} ${level.padEnd(5)} ${msg}${kv ? ' ' + kv : ''}`);
    }
  };
  return {
    verbosity,
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

/** A logger that records lines, for unit tests. */
export function memoryLogger(verbosity = 1): Logger & { lines: string[] } {
  const lines: string[] = [];
  const l = createLogger({ verbosity, write: (s) => lines.push(s) });
  return Object.assign(l, { lines });
}
