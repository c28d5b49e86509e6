import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr, type Cidr } from '../../src/ip/ipv4';
import { memoryLogger } from '../../src/log';
import { IpMasq, type NftResult, type NftRunner, deleteScript, forwardDropChains, masqScript, masqTable, normalizeRuleset, removeLeftoverTable } from '../../src/ipmasq';
import { isRudderError } from '../../src/errors';
import { waitUntil } from '../helpers/wait';

function cidr(s: string): Cidr {
  const c = parseCidr(s, true);
  assert.ok(c, s);
  return c;
}

const params = { network: cidr('10.5.0.0/16'), subnet: cidr('10.5.3.0/24') };

test('masquerade rules: within the Network returns, leaving it masquerades, multicast is left alone', () => {
  const t = masqTable(params);
  const lines = t.split('\n').map((l) => l.trim());
  const post = lines.slice(lines.indexOf('chain postrouting {') + 1, lines.indexOf('}'));
  assert.deepEqual(post, [
    'type nat hook postrouting priority srcnat; policy accept;',
    'ip saddr 10.5.0.0/16 ip daddr 10.5.0.0/16 return',
    'ip saddr 10.5.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random',
    'ip saddr != 10.5.0.0/16 ip daddr 10.5.3.0/24 return',
    'ip saddr != 10.5.0.0/16 ip daddr 10.5.0.0/16 masquerade fully-random',
  ]);
  // The pod-to-pod return comes before any masquerade of Network sources.
  assert.ok(t.indexOf('ip daddr 10.5.0.0/16 return') < t.indexOf('masquerade'));
  assert.match(t, /chain forward \{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip saddr 10\.5\.0\.0\/16 accept\n\t\tip daddr 10\.5\.0\.0\/16 accept\n\t\}/);
  assert.ok(t.startsWith('table ip rudder {'));
  assert.ok(!/policy drop/.test(t), 'never drops anything');
});

test('the script replaces the table in one transaction whether or not it exists', () => {
  const s = masqScript(params);
  const lines = s.split('\n');
  assert.equal(lines[0], 'table ip rudder {}');
  assert.equal(lines[1], 'delete table ip rudder');
  assert.ok(s.includes(masqTable(params)));
  assert.equal(deleteScript(), 'delete table ip rudder\n');
  // A different Network gives different rules (nothing hard-coded).
  const other = masqTable({ network: cidr('172.31.0.0/20'), subnet: cidr('172.31.4.0/24') });
  assert.match(other, /ip saddr 172\.31\.0\.0\/20 ip daddr 172\.31\.0\.0\/20 return/);
  assert.match(other, /ip daddr 172\.31\.4\.0\/24 return/);
});

test('normalizeRuleset ignores handles, comments, blank lines and indentation only', () => {
  const a = 'table ip rudder {\n\tchain x {\n\t\tip saddr 10.0.0.0/8 accept # handle 4\n\n\t}\n}\n';
  const b = 'table ip rudder {\n  chain x {\n    ip saddr 10.0.0.0/8 accept\n  }\n}';
  assert.equal(normalizeRuleset(a), normalizeRuleset(b));
  assert.notEqual(normalizeRuleset(a), normalizeRuleset(b.replace('accept', 'drop')));
});

test('forwardDropChains finds forward base chains with policy drop in other tables only', () => {
  const rs = [
    'table ip filter {',
    '\tchain FORWARD {',
    '\t\ttype filter hook forward priority filter; policy drop;',
    '\t}',
    '\tchain INPUT {',
    '\t\ttype filter hook input priority filter; policy drop;',
    '\t}',
    '}',
    'table inet fw {',
    '\tchain fwd {',
    '\t\ttype filter hook forward priority 10; policy accept;',
    '\t}',
    '}',
    'table ip rudder {',
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy drop;',
    '\t}',
    '}',
  ].join('\n');
  assert.deepEqual(forwardDropChains(rs), ['ip filter/FORWARD']);
  assert.deepEqual(forwardDropChains(''), []);
});

/** A fake nft holding one table's text, recording every call. */
function fakeNft(): { run: NftRunner; calls: string[]; table: { text: string | null }; failApply: { on: boolean } } {
  const table = { text: null as string | null };
  const failApply = { on: false };
  const calls: string[] = [];
  const ok = (stdout = ''): NftResult => ({ code: 0, stdout, stderr: '' });
  const run: NftRunner = async (args, stdin) => {
    calls.push(args.join(' '));
    if (args[0] === 'list' && args[1] === 'table') return table.text === null ? { code: 1, stdout: '', stderr: 'Error: No such file or directory' } : ok(table.text + '\n');
    if (args[0] === 'list' && args[1] === 'ruleset') return ok(table.text ?? '');
    if (args[0] === '-f') {
      const s = stdin ?? '';
      if (failApply.on) return { code: 1, stdout: '', stderr: 'Error: Could not process rule: Operation not supported' };
      if (s === deleteScript()) {
        if (table.text === null) return { code: 1, stdout: '', stderr: 'Error: No such file or directory' };
        table.text = null;
        return ok();
      }
      const i = s.indexOf('table ip rudder {\n');
      table.text = s.slice(i).trimEnd();
      return ok();
    }
    return { code: 2, stdout: '', stderr: `unexpected ${args.join(' ')}` };
  };
  return { run, calls, table, failApply };
}

test('IpMasq applies, leaves a matching table alone, restores a removed or changed one, removes it on stop', async () => {
  const nft = fakeNft();
  let restores = 0;
  const log = memoryLogger();
  const m = new IpMasq({ params, log, nft: nft.run, intervalMs: 3_600_000, onRestore: () => restores++ });
  await m.start();
  assert.equal(nft.table.text, masqTable(params));
  assert.equal(m.active, true);

  const applies = (): number => nft.calls.filter((c) => c === '-f -').length;
  const before = applies();
  assert.equal(await m.ensure(), true);
  assert.equal(applies(), before, 'a matching table is not rewritten');

  nft.table.text = null; // nft delete table ip rudder
  assert.equal(await m.ensure(), false);
  assert.equal(nft.table.text, masqTable(params));
  assert.equal(restores, 1);

  nft.table.text = masqTable(params).replace('masquerade fully-random', 'accept'); // someone edited a rule
  assert.equal(await m.ensure(), false);
  assert.equal(nft.table.text, masqTable(params));
  assert.equal(restores, 2);
  assert.ok(log.lines.some((l) => l.includes('ip masquerade table was changed; restoring it')));
  assert.ok(log.lines.some((l) => l.includes('ip masquerade table is missing; restoring it')));

  await m.stop();
  assert.equal(nft.table.text, null);
  assert.equal(m.active, false);
});

test('IpMasq: nft refusing the rules is a typed error naming the table and nft\'s message', async () => {
  const nft = fakeNft();
  nft.failApply.on = true;
  const m = new IpMasq({ params, log: memoryLogger(), nft: nft.run });
  await assert.rejects(m.start(), (e: unknown) => isRudderError(e, 'E_IPMASQ') && /table ip rudder/.test(e.message) && /Operation not supported/.test(e.message));
});

test('IpMasq: the periodic check restores the table by itself; a failing restore is logged and retried', async () => {
  const nft = fakeNft();
  const log = memoryLogger();
  let restores = 0;
  const m = new IpMasq({ params, log, nft: nft.run, intervalMs: 5, onRestore: () => restores++ });
  await m.start();
  nft.failApply.on = true;
  nft.table.text = null;
  await waitFor(() => log.lines.some((l) => l.includes('could not be restored')));
  nft.failApply.on = false;
  await waitFor(() => nft.table.text !== null);
  await waitFor(() => restores === 1);
  assert.equal(nft.table.text, masqTable(params));
  assert.equal(log.lines.filter((l) => l.includes('could not be restored')).length, 1, 'one error per failing streak');
  await m.stop();
  assert.equal(nft.table.text, null);
});

test('removeLeftoverTable deletes a table left by an earlier -ip-masq run, and is quiet without one or without nft', async () => {
  const nft = fakeNft();
  nft.table.text = masqTable(params);
  const log = memoryLogger();
  await removeLeftoverTable(log, nft.run);
  assert.equal(nft.table.text, null);
  assert.ok(log.lines.some((l) => l.includes('removed ip masquerade table left by an earlier run')));
  const n = log.lines.length;
  await removeLeftoverTable(log, nft.run);
  assert.equal(log.lines.length, n);
  await removeLeftoverTable(log, async () => {
    throw new Error('spawn nft ENOENT');
  });
});

/** Waits for the periodic check (5 ms); the give-up only keeps a broken run from hanging. */
async function waitFor(cond: () => boolean): Promise<void> {
  await waitUntil(() => cond(), { giveUpMs: 30_000, intervalMs: 2, what: cond.toString() });
}
