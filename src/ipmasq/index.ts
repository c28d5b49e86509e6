/**
 * -ip-masq as an "ensure": apply `table ip rudder` atomically with
 * `nft -f -`, re-check it every CHECK_INTERVAL_MS and put it back if it was
 * removed or changed, delete it on a clean exit. The `nft` binary is the
 * nftables API here (Debian package nftables, installed by ./build); it runs
 * in the daemon's own network namespace.
 */
import { spawn } from 'node:child_process';
import { RudderError, describeError } from '../errors';
import { formatCidr } from '../ip/ipv4';
import type { Logger } from '../log';
import { sleep } from '../util/sleep';
import { MasqParams, TABLE_FAMILY, TABLE_NAME, deleteScript, forwardDropChains, masqScript, normalizeRuleset } from './rules';

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
  /** Called each time the table was found removed or changed and put back. */
  onRestore?: () => void;
}

export class IpMasq {
  private readonly nft: NftRunner;
  /** normalizeRuleset(`nft list table`) right after our last apply. */
  private expected: string | null = null;
  private loop: Promise<void> | null = null;
  private readonly ac = new AbortController();
  /** Whether our table is believed to be in place. */
  active = false;

  constructor(private readonly o: IpMasqOptions) {
    this.nft = o.nft ?? runNft;
  }

  /** Applies the table now (throws E_IPMASQ if nft refuses), then keeps it until stop(). */
  async start(): Promise<void> {
    await this.apply();
    this.o.log.info('ip masquerade rules installed', {
      table: `${TABLE_FAMILY} ${TABLE_NAME}`,
      network: formatCidr(this.o.params.network),
      subnet: formatCidr(this.o.params.subnet),
    });
    await this.warnForwardDrop();
    this.loop = this.keep(this.ac.signal);
  }

  /** Stops the re-checks and removes the table. */
  async stop(): Promise<void> {
    this.ac.abort();
    await this.loop;
    const r = await this.nft(['list', 'table', TABLE_FAMILY, TABLE_NAME]);
    if (r.code !== 0) return; // already gone
    const d = await this.nft(['-f', '-'], deleteScript());
    if (d.code !== 0) throw new RudderError('E_IPMASQ', `removing table ${TABLE_FAMILY} ${TABLE_NAME} failed: ${d.stderr.trim()}`);
    this.active = false;
    this.o.log.info('ip masquerade rules removed', { table: `${TABLE_FAMILY} ${TABLE_NAME}` });
  }

  /** One check: true if the table was as expected, false if it was put back. */
  async ensure(): Promise<boolean> {
    const r = await this.nft(['list', 'table', TABLE_FAMILY, TABLE_NAME]);
    if (r.code === 0 && this.expected !== null && normalizeRuleset(r.stdout) === this.expected) return true;
    this.active = false;
    this.o.log.warn(r.code === 0 ? 'ip masquerade table was changed; restoring it' : 'ip masquerade table is missing; restoring it', {
      table: `${TABLE_FAMILY} ${TABLE_NAME}`,
    });
    await this.apply();
    this.o.onRestore?.();
    this.o.log.info('ip masquerade rules restored', { table: `${TABLE_FAMILY} ${TABLE_NAME}` });
    return false;
  }

  private async apply(): Promise<void> {
    const a = await this.nft(['-f', '-'], masqScript(this.o.params));
    if (a.code !== 0) {
      throw new RudderError('E_IPMASQ', `applying table ${TABLE_FAMILY} ${TABLE_NAME} with nft failed (status ${a.code}): ${a.stderr.trim() || a.stdout.trim()}`);
    }
    const l = await this.nft(['list', 'table', TABLE_FAMILY, TABLE_NAME]);
    if (l.code !== 0) throw new RudderError('E_IPMASQ', `table ${TABLE_FAMILY} ${TABLE_NAME} missing right after applying it: ${l.stderr.trim()}`);
    this.expected = normalizeRuleset(l.stdout);
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
      const net = formatCidr(this.o.params.network);
      this.o.log.warn('a forward chain of another table drops by default; its drop wins over the accept in table ip rudder', {
        chains: chains.join(','),
        hint: `iptables -I FORWARD -s ${net} -j ACCEPT; iptables -I FORWARD -d ${net} -j ACCEPT (Docker: in DOCKER-USER)`,
      });
    } catch (e) {
      this.o.log.debug('could not list the nftables ruleset', { error: describeError(e) });
    }
  }
}

/** With -ip-masq off: remove a table left by an earlier run with it on. Never throws. */
export async function removeLeftoverTable(log: Logger, nft: NftRunner = runNft): Promise<void> {
  try {
    const r = await nft(['list', 'table', TABLE_FAMILY, TABLE_NAME]);
    if (r.code !== 0) return;
    const d = await nft(['-f', '-'], deleteScript());
    if (d.code === 0) log.info('removed ip masquerade table left by an earlier run with -ip-masq', { table: `${TABLE_FAMILY} ${TABLE_NAME}` });
    else log.warn('could not remove a left-over ip masquerade table', { error: d.stderr.trim() });
  } catch (e) {
    log.debug('nft not available; no left-over ip masquerade table to look for', { error: describeError(e) });
  }
}
