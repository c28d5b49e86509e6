/**
 * -ip-masq as an "ensure": apply `table ip rudder` (and `table ip6 rudder`
 * when the network has IPv6) atomically with `nft -f -`, re-check them every
 * CHECK_INTERVAL_MS and put them back if one was removed or changed, delete
 * them on a clean exit. The `nft` binary is the
 * nftables API here (Debian package nftables, installed by ./build); it runs
 * in the daemon's own network namespace.
 */
import { spawn } from 'node:child_process';
import { RudderError, describeError } from '../errors';
import { formatCidr } from '../ip/ipv4';
import { formatCidr6 } from '../ip/ipv6';
import type { Logger } from '../log';
import { sleep } from '../util/sleep';
import { MasqFamily, MasqParams, TABLE_FAMILIES, TABLE_NAME, deleteScript, forwardDropChains, masqFamilies, masqScript, normalizeRuleset } from './rules';

export * from './rules';

export const CHECK_INTERVAL_MS = 10_000;

export interface NftResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `nft args...` with `stdin`; rejects only when nft cannot be started. */
export type NftRunner = (args: readonly string[], stdin?: string) => Promise<NftResult>;

export const runNft: NftRunner = (args, stdin) =>
  new Promise((resolve, reject) => {
    const child = spawn('nft', [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'ENOENT'
          ? new RudderError('E_IPMASQ', '-ip-masq needs the nft command (Debian/Ubuntu package nftables)', { cause: e })
          : new RudderError('E_IPMASQ', `cannot run nft: ${e.message}`, { cause: e }),
      );
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined); // nft exiting early is reported by its status
    child.stdin.end(stdin ?? '');
  });

export interface IpMasqOptions {
  params: MasqParams;
  log: Logger;
  nft?: NftRunner;
  intervalMs?: number;
  /** Called each time a table was found removed or changed and put back. */
  onRestore?: () => void;
}

/** `ip rudder`, `ip6 rudder`: a table's name in messages. */
const tableName = (f: MasqFamily): string => `${f} ${TABLE_NAME}`;

export class IpMasq {
  private readonly nft: NftRunner;
  /** The tables these params define: `ip` (IPv4 on), `ip6` (EnableIPv6). */
  private readonly families: readonly MasqFamily[];
  /** normalizeRuleset(`nft list table`) per table right after our last apply. */
  private expected = new Map<MasqFamily, string>();
  private loop: Promise<void> | null = null;
  private readonly ac = new AbortController();
  /** Whether our tables are believed to be in place. */
  active = false;

  constructor(private readonly o: IpMasqOptions) {
    this.nft = o.nft ?? runNft;
    this.families = masqFamilies(o.params);
  }

  private get tables(): string {
    return this.families.map(tableName).join(', ');
  }

  /** Applies the tables now (throws E_IPMASQ if nft refuses), then keeps them until stop(). */
  async start(): Promise<void> {
    // A table of a family the network no longer has (EnableIPv6 turned off) is a leftover.
    for (const f of TABLE_FAMILIES) if (!this.families.includes(f)) await removeTable(this.o.log, this.nft, f);
    await this.apply();
    const p = this.o.params;
    this.o.log.info('ip masquerade rules installed', {
      table: this.tables,
      ...(p.network !== undefined ? { network: formatCidr(p.network), subnet: formatCidr(p.subnet) } : {}),
      ...(p.ipv6 !== undefined ? { ipv6Network: formatCidr6(p.ipv6.network), ipv6Subnet: formatCidr6(p.ipv6.subnet) } : {}),
    });
    await this.warnForwardDrop();
    this.loop = this.keep(this.ac.signal);
  }

  /** Stops the re-checks and removes the tables. */
  async stop(): Promise<void> {
    this.ac.abort();
    await this.loop;
    const removed: string[] = [];
    for (const f of this.families) {
      const r = await this.nft(['list', 'table', f, TABLE_NAME]);
      if (r.code !== 0) continue; // already gone
      const d = await this.nft(['-f', '-'], deleteScript(f));
      if (d.code !== 0) throw new RudderError('E_IPMASQ', `removing table ${tableName(f)} failed: ${d.stderr.trim()}`);
      removed.push(tableName(f));
    }
    this.active = false;
    if (removed.length > 0) this.o.log.info('ip masquerade rules removed', { table: removed.join(', ') });
  }

  /** One check: true if every table was as expected, false if they were put back. */
  async ensure(): Promise<boolean> {
    let missing = false;
    let changed = false;
    for (const f of this.families) {
      const r = await this.nft(['list', 'table', f, TABLE_NAME]);
      if (r.code !== 0) missing = true;
      else if (normalizeRuleset(r.stdout) !== this.expected.get(f)) changed = true;
    }
    if (!missing && !changed) return true;
    this.active = false;
    this.o.log.warn(missing ? 'ip masquerade table is missing; restoring it' : 'ip masquerade table was changed; restoring it', { table: this.tables });
    await this.apply();
    this.o.onRestore?.();
    this.o.log.info('ip masquerade rules restored', { table: this.tables });
    return false;
  }

  private async apply(): Promise<void> {
    const a = await this.nft(['-f', '-'], masqScript(this.o.params));
    if (a.code !== 0) {
      throw new RudderError('E_IPMASQ', `applying table ${this.tables} with nft failed (status ${a.code}): ${a.stderr.trim() || a.stdout.trim()}`);
    }
    const expected = new Map<MasqFamily, string>();
    for (const f of this.families) {
      const l = await this.nft(['list', 'table', f, TABLE_NAME]);
      if (l.code !== 0) throw new RudderError('E_IPMASQ', `table ${tableName(f)} missing right after applying it: ${l.stderr.trim()}`);
      expected.set(f, normalizeRuleset(l.stdout));
    }
    this.expected = expected;
    this.active = true;
  }

  private async keep(signal: AbortSignal): Promise<void> {
    let failing = false;
    while (!signal.aborted) {
      await sleep(this.o.intervalMs ?? CHECK_INTERVAL_MS, signal);
      if (signal.aborted) return;
      try {
        await this.ensure();
        if (failing) this.o.log.info('ip masquerade rules can be applied again');
        failing = false;
      } catch (e) {
        // Logged once per failing streak; retried at the next interval.
        if (!failing) this.o.log.error('ip masquerade rules could not be restored; retrying', { error: describeError(e) });
        failing = true;
      }
    }
  }

  private async warnForwardDrop(): Promise<void> {
    try {
      const r = await this.nft(['list', 'ruleset']);
      if (r.code !== 0) return;
      const chains = forwardDropChains(r.stdout);
      if (chains.length === 0) return;
      const p = this.o.params;
      const hints: string[] = [];
      if (p.network !== undefined) {
        const net = formatCidr(p.network);
        hints.push(`iptables -I FORWARD -s ${net} -j ACCEPT; iptables -I FORWARD -d ${net} -j ACCEPT`);
      }
      if (p.ipv6 !== undefined) {
        const net = formatCidr6(p.ipv6.network);
        hints.push(`ip6tables -I FORWARD -s ${net} -j ACCEPT; ip6tables -I FORWARD -d ${net} -j ACCEPT`);
      }
      this.o.log.warn(`a forward chain of another table drops by default; its drop wins over the accept in table ${this.tables}`, {
        chains: chains.join(','),
        hint: `${hints.join('; ')} (Docker: in DOCKER-USER)`,
      });
    } catch (e) {
      this.o.log.debug('could not list the nftables ruleset', { error: describeError(e) });
    }
  }
}

/** Deletes one of Rudder's tables if present: logged, never throws. */
async function removeTable(log: Logger, nft: NftRunner, family: MasqFamily): Promise<void> {
  const r = await nft(['list', 'table', family, TABLE_NAME]);
  if (r.code !== 0) return;
  const d = await nft(['-f', '-'], deleteScript(family));
  if (d.code === 0) log.info('removed ip masquerade table left by an earlier run with -ip-masq', { table: tableName(family) });
  else log.warn('could not remove a left-over ip masquerade table', { table: tableName(family), error: d.stderr.trim() });
}

/** With -ip-masq off: remove the tables (IPv4 and IPv6) left by an earlier run with it on. Never throws. */
export async function removeLeftoverTable(log: Logger, nft: NftRunner = runNft): Promise<void> {
  try {
    for (const f of TABLE_FAMILIES) await removeTable(log, nft, f);
  } catch (e) {
    log.debug('nft not available; no left-over ip masquerade table to look for', { error: describeError(e) });
  }
}
