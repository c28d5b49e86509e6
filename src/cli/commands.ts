/**
 * Subcommands that talk to etcd or check files: `config check|get|set` and
 * `leases`. They share the daemon's etcd flags.
 */
import { readFileSync, existsSync } from 'node:fs';
import { configToJson, parseConfig } from '../config';
import { RudderError } from '../errors';
import { formatCidr, formatIp } from '../ip/ipv4';
import type { Registry } from '../subnet/registry';
import { configKey } from '../subnet/registry';

export interface Out {
  out(s: string): void;
  err(s: string): void;
}

/** `rudder config check FILE`: validates offline and prints the config with defaults. */
export function configCheck(args: readonly string[], io: Out): number {
  const file = args[0];
  if (file === undefined || args.length > 1) throw new RudderError('E_FLAG', 'config check: expected exactly one argument, the config file (- for standard input)');
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new RudderError('E_CONFIG', `config check: cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const cfg = parseConfig(text);
  io.out(JSON.stringify(configToJson(cfg), null, 2));
  io.err(`${file}: valid`);
  return 0;
}

export async function configGet(reg: Registry, prefix: string, io: Out): Promise<number> {
  const text = await reg.getConfig();
  if (text === null) {
    io.err(`no network config at ${configKey(prefix)}`);
    return 1;
  }
  io.out(text.trim());
  try {
    parseConfig(text);
  } catch (e) {
    io.err(`warning: the stored config is invalid: ${(e as Error).message}`);
    return 1;
  }
  return 0;
}

/** `rudder config set JSON|FILE [--if-absent]`: validates before writing. */
export async function configSet(reg: Registry, prefix: string, args: readonly string[], io: Out): Promise<number> {
  const ifAbsent = args.includes('--if-absent') || args.includes('-if-absent');
  const rest = args.filter((a) => a !== '--if-absent' && a !== '-if-absent');
  const arg = rest[0];
  if (arg === undefined || rest.length > 1) throw new RudderError('E_FLAG', 'config set: expected one argument, a JSON config or a file holding one (- for standard input), and optionally --if-absent');
  let text: string;
  if (arg.trimStart().startsWith('{')) text = arg;
  else if (arg === '-' || existsSync(arg)) text = readFileSync(arg === '-' ? 0 : arg, 'utf8');
  else throw new RudderError('E_FLAG', `config set: ${JSON.stringify(arg)} is neither a JSON object nor a readable file`);
  parseConfig(text); // throws with key, value, expected form
  const wrote = await reg.putConfig(text.trim(), ifAbsent);
  io.err(wrote ? `config written to ${configKey(prefix)}` : `a config already exists at ${configKey(prefix)}; left unchanged (--if-absent)`);
  return 0;
}

function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** `rudder leases`: a table of every lease. */
export async function leasesTable(reg: Registry, io: Out): Promise<number> {
  const list = await reg.listLeases();
  const rows: string[][] = [['SUBNET', 'PUBLIC IP', 'BACKEND', 'EXPIRES IN']];
  const sorted = [...list.records].sort((a, b) => a.lease.subnet.ip - b.lease.subnet.ip);
  const ttls = await Promise.all(sorted.map((r) => (r.etcdLeaseId === '0' ? Promise.resolve(null) : reg.timeToLive(r.etcdLeaseId))));
  sorted.forEach((r, i) => {
    const ttl = ttls[i];
    rows.push([
      formatCidr(r.lease.subnet),
      formatIp(r.lease.publicIP),
      r.lease.backendType,
      r.etcdLeaseId === '0' ? 'reservation' : ttl === null || ttl === undefined ? 'expired' : fmtDuration(ttl),
    ]);
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  for (const r of rows) io.out(r.map((v, c) => v.padEnd(widths[c] ?? 0)).join('  ').trimEnd());
  for (const inv of list.invalid) io.err(`invalid entry ${inv.key}: ${inv.reason}`);
  if (list.records.length === 0) io.err('no leases');
  return 0;
}
