/**
 * The subnet file (`-subnet-file`, default /run/rudder/subnet.env): what
 * Docker (--bip/--mtu), systemd (EnvironmentFile=) and CNI read. Written
 * atomically (temp file in the same directory, fsync, rename) so a reader
 * never sees a partial file. Also Rudder's memory of its subnet across
 * restarts.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { RudderError } from './errors';
import { Cidr, firstHost, formatCidr, formatIp, parseCidr } from './ip/ipv4';

export interface SubnetFileContents {
  network: Cidr;
  subnet: Cidr;
  mtu: number;
  ipMasq: boolean;
}

/** The file's text (pure). RUDDER_SUBNET is the lease's first host address with its length. */
export function formatSubnetFile(c: SubnetFileContents): string {
  return [
    `RUDDER_NETWORK=${formatCidr(c.network)}`,
    `RUDDER_SUBNET=${formatIp(firstHost(c.subnet))}/${c.subnet.prefix}`,
    `RUDDER_MTU=${c.mtu}`,
    `RUDDER_IPMASQ=${c.ipMasq}`,
    '',
  ].join('\n');
}

/** Parses `KEY=value` lines (pure); ignores comments and unknown keys. */
export function parseEnvFile(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#')) continue;
    const eq = t.indexOf('=');
    if (eq <= 0) continue;
    m.set(t.slice(0, eq).trim(), t.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
  }
  return m;
}

export async function writeSubnetFile(file: string, c: SubnetFileContents): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await fs.mkdir(dir, { recursive: true });
    const fh = await fs.open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(formatSubnetFile(c));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new RudderError('E_SUBNET_FILE', `cannot write subnet file ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** The subnet remembered from an earlier run (the lease, not the host address), or null. */
export async function readRememberedSubnet(file: string): Promise<Cidr | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return null;
  }
  const v = parseEnvFile(text).get('RUDDER_SUBNET');
  return v ? parseCidr(v) : null;
}
