/**
 * This host's identity: the `RudderHostID` of its lease value, which tells
 * a restart of this host (reuse the lease) from another host that claims
 * the same PublicIP (a clone, one NAT address, a wrong -public-ip: refuse).
 *
 * Where it comes from, first that applies (docs/architecture.md, "Host
 * identity"):
 *   1. `-host-id` / RUDDER_HOST_ID;
 *   2. the file `host-id` beside the subnet file, when it holds a valid id;
 *   3. else that file is created (atomically, 0644, never overwriting one a
 *      concurrent start wrote) with a hash of /etc/machine-id and the subnet
 *      file's path — stable across reboots, which empty /run, and distinct
 *      for several daemons on one machine (hosts in namespaces) — or, with
 *      no readable machine-id, 128 random bits.
 */
import type * as Crypto from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { RudderError } from '../errors';
import { HOST_ID_RE } from './registry';

export const MACHINE_ID_FILE = '/etc/machine-id';

export interface HostIdOptions {
  /** -host-id, when given. */
  override?: string | undefined;
  /** The daemon's -subnet-file; the id is kept beside it. */
  subnetFile: string;
  /** Tests point this elsewhere. */
  machineIdFile?: string;
}

export interface HostId {
  id: string;
  /** Where it came from, for the log. */
  source: 'flag' | 'file' | 'machine-id' | 'random';
  /** The host-id file (read or written); undefined with the flag. */
  file?: string;
}

export function hostIdFile(subnetFile: string): string {
  return path.join(path.dirname(path.resolve(subnetFile)), 'host-id');
}

/** The id's first 8 characters, for logs and tables. */
export function shortHostId(id: string | undefined): string {
  return id === undefined ? '-' : id.slice(0, 8);
}

/**
 * node:crypto, loaded on first use: a restart finds its id in the file and
 * never needs it, and what a daemon loads stays resident (0.75 MB over
 * node:http, bench/memory.ts; issue 17).
 */
function crypto(): typeof Crypto {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node:crypto') as typeof Crypto;
}

/** The id derived from a machine-id and the subnet file's path (pure). */
export function derivedHostId(machineId: string, subnetFile: string): string {
  return crypto().createHash('sha256').update(`rudder host-id\0${machineId}\0${path.resolve(subnetFile)}`).digest('hex').slice(0, 32);
}

async function readId(file: string): Promise<string | null> {
  try {
    const t = (await fs.readFile(file, 'utf8')).trim();
    return HOST_ID_RE.test(t) ? t : null;
  } catch {
    return null;
  }
}

async function readMachineId(file: string): Promise<string | null> {
  try {
    const t = (await fs.readFile(file, 'utf8')).trim();
    return /^[0-9a-fA-F]{32}$/.test(t) ? t.toLowerCase() : null;
  } catch {
    return null;
  }
}

/** Creates `file` holding `id` unless it exists; returns what the file holds afterwards. */
async function createOnce(file: string, id: string): Promise<string> {
  const tmp = `${path.join(path.dirname(file), `.host-id.${process.pid}.${crypto().randomBytes(4).toString('hex')}.tmp`)}`;
  await fs.mkdir(path.dirname(file), { recursive: true });
  try {
    const fh = await fs.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(`${id}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.chmod(tmp, 0o644); // the umask may have taken bits off
    try {
      await fs.link(tmp, file); // fails if it exists: the first writer wins
      return id;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const theirs = await readId(file);
      if (theirs === null) throw new RudderError('E_HOST_ID', `${file} exists but holds no valid host id (1 to 64 letters, digits, '.', '_' or '-'): fix or remove it`);
      return theirs;
    }
  } finally {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
  }
}

export async function resolveHostId(o: HostIdOptions): Promise<HostId> {
  if (o.override !== undefined) {
    if (!HOST_ID_RE.test(o.override)) throw new RudderError('E_FLAG', `-host-id=${JSON.stringify(o.override)}: expected 1 to 64 letters, digits, '.', '_' or '-'`);
    return { id: o.override, source: 'flag' };
  }
  const file = hostIdFile(o.subnetFile);
  const kept = await readId(file);
  if (kept !== null) return { id: kept, source: 'file', file };
  const machineId = await readMachineId(o.machineIdFile ?? MACHINE_ID_FILE);
  const fresh = machineId !== null ? derivedHostId(machineId, o.subnetFile) : crypto().randomBytes(16).toString('hex');
  let id: string;
  try {
    id = await createOnce(file, fresh);
  } catch (e) {
    if (e instanceof RudderError) throw e;
    throw new RudderError('E_HOST_ID', `cannot write the host id to ${file}: ${(e as Error).message} (or give one with -host-id)`, { cause: e });
  }
  return { id, source: id !== fresh ? 'file' : machineId !== null ? 'machine-id' : 'random', file };
}
