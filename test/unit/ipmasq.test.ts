import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr, type Cidr } from '../../src/ip/ipv4';
import { parseCidr6, type Cidr6 } from '../../src/ip/ipv6';
import { memoryLogger } from '../../src/log';
import { IpMasq, type MasqParams, type NftResult, type NftRunner, TABLE_FAMILIES, deleteScript, forwardDropChains, masqFamilies, masqScript, masqTable, normalizeRuleset, removeLeftoverTable } from '../../src/ipmasq';
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

function cidr6(s: string): Cidr6 {
  const c = parseCidr6(s, true);
  assert.ok(c, s);
  return c;
}

const ipv6 = { network: cidr6('fd42:42::/48'), subnet: cidr6('fd42:42:0:3::/64') };
const dual: MasqParams = { ...params, ipv6 };
const v6only: MasqParams = { ipv6 };

test('IPv6: table ip6 rudder holds the same rules for the IPv6Network; multicast is ff00::/8', () => {
  const t = masqTable(dual, 'ip6');
  const lines = t.split('\n').map((l) => l.trim());
  assert.equal(lines[0], 'table ip6 rudder {');
  const post = lines.slice(lines.indexOf('chain postrouting {') + 1, lines.indexOf('}'));
  assert.deepEqual(post, [
    'type nat hook postrouting priority srcnat; policy accept;',
    'ip6 saddr fd42:42::/48 ip6 daddr fd42:42::/48 return',
    'ip6 saddr fd42:42::/48 ip6 daddr != ff00::/8 masquerade fully-random',
    'ip6 saddr != fd42:42::/48 ip6 daddr fd42:42:0:3::/64 return',
    'ip6 saddr != fd42:42::/48 ip6 daddr fd42:42::/48 masquerade fully-random',
  ]);
  assert.match(t, /chain forward \{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip6 saddr fd42:42::\/48 accept\n\t\tip6 daddr fd42:42::\/48 accept\n\t\}/);
  assert.ok(!/\bip saddr|policy drop/.test(t), 'IPv6 rules only, never a drop');
  // The IPv4 table is the same as without IPv6.
  assert.equal(masqTable(dual), masqTable(params));
  assert.equal(masqTable(params, 'ip6'), '', 'no IPv6 table without EnableIPv6');
  assert.equal(masqTable(v6only), '', 'no IPv4 table in an IPv6-only network');
  assert.deepEqual(masqFamilies(params), ['ip']);
  assert.deepEqual(masqFamilies(dual), ['ip', 'ip6']);
  assert.deepEqual(masqFamilies(v6only), ['ip6']);
});

test('IPv6: one script replaces both tables in one transaction; an IPv6-only one holds only ip6', () => {
  const s = masqScript(dual);
  assert.equal(
    s,
    ['table ip rudder {}', 'delete table ip rudder', masqTable(dual), 'table ip6 rudder {}', 'delete table ip6 rudder', masqTable(dual, 'ip6'), ''].join('\n'),
  );
  const only = masqScript(v6only);
  assert.ok(only.startsWith('table ip6 rudder {}\ndelete table ip6 rudder\ntable ip6 rudder {'));
  assert.ok(!only.includes('table ip rudder'));
  assert.equal(deleteScript('ip6'), 'delete table ip6 rudder\n');
  assert.deepEqual(TABLE_FAMILIES, ['ip', 'ip6']);
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
  // Our IPv6 table is ours too; another program's ip6/inet drop is reported.
  const rs6 = ['table ip6 rudder {', '\tchain forward {', '\t\ttype filter hook forward priority filter; policy drop;', '\t}', '}',
    'table inet fw {', '\tchain f {', '\t\ttype filter hook forward priority 0; policy drop;', '\t}', '}'].join('\n');
  assert.deepEqual(forwardDropChains(rs6), ['inet fw/f']);
});

/**
 * A fake nft holding Rudder's tables by family (`table` is the IPv4 one,
 * `tables` every one), recording every call.
 */
function fakeNft(): { run: NftRunner; calls: string[]; table: { text: string | null }; tables: Map<string, string>; failApply: { on: boolean } } {
  const tables = new Map<string, string>();
  const table = {
    get text(): string | null {
      return tables.get('ip') ?? null;
    },
    set text(t: string | null) {
      if (t === null) tables.delete('ip');
      else tables.set('ip', t);
    },
  };
  const failApply = { on: false };
  const calls: string[] = [];
  const ok = (stdout = ''): NftResult => ({ code: 0, stdout, stderr: '' });
  const missing: NftResult = { code: 1, stdout: '', stderr: 'Error: No such file or directory' };
  const run: NftRunner = async (args, stdin) => {
    calls.push(args.join(' '));
    if (args[0] === 'list' && args[1] === 'table') {
      const t = tables.get(args[2] ?? '');
      return t === undefined ? missing : ok(t + '\n');
    }
    if (args[0] === 'list' && args[1] === 'ruleset') return ok([...tables.values()].join('\n'));
    if (args[0] === '-f') {
      const s = stdin ?? '';
      if (failApply.on) return { code: 1, stdout: '', stderr: 'Error: Could not process rule: Operation not supported' };
      const del = /^delete table (\S+) rudder\n$/.exec(s);
      if (del) {
        if (!tables.delete(del[1] ?? '')) return missing;
        return ok();
      }
      // Every `table F rudder {` definition (not the empty `{}` placeholders) replaces that table.
      for (const m of s.matchAll(/^table (\S+) rudder \{\n[\s\S]*?\n\}$/gm)) tables.set(m[1] ?? '', m[0]);
      return ok();
    }
    return { code: 2, stdout: '', stderr: `unexpected ${args.join(' ')}` };
  };
  return { run, calls, table, tables, failApply };
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

test('IpMasq with IPv6: applies, checks and restores both tables; stop removes both', async () => {
  const nft = fakeNft();
  const log = memoryLogger();
  let restores = 0;
  const m = new IpMasq({ params: dual, log, nft: nft.run, intervalMs: 3_600_000, onRestore: () => restores++ });
  await m.start();
  assert.equal(nft.tables.get('ip'), masqTable(dual));
  assert.equal(nft.tables.get('ip6'), masqTable(dual, 'ip6'));
  assert.ok(log.lines.some((l) => l.includes('ip masquerade rules installed') && l.includes('ip6 rudder') && l.includes('fd42:42:0:3::/64')));
  assert.equal(await m.ensure(), true);

  nft.tables.delete('ip6'); // nft delete table ip6 rudder
  assert.equal(await m.ensure(), false);
  assert.equal(nft.tables.get('ip6'), masqTable(dual, 'ip6'));
  assert.equal(restores, 1);

  nft.tables.set('ip6', masqTable(dual, 'ip6').replace('ff00::/8', 'ff02::/16'));
  assert.equal(await m.ensure(), false);
  assert.equal(nft.tables.get('ip6'), masqTable(dual, 'ip6'));
  assert.equal(restores, 2);

  await m.stop();
  assert.equal(nft.tables.size, 0);
  assert.ok(log.lines.some((l) => l.includes('ip masquerade rules removed') && l.includes('ip rudder, ip6 rudder')));
});

test('IpMasq IPv6-only: only table ip6 rudder; a stale ip table of an earlier IPv4 run is removed', async () => {
  const nft = fakeNft();
  nft.tables.set('ip', masqTable(params));
  const log = memoryLogger();
  const m = new IpMasq({ params: v6only, log, nft: nft.run, intervalMs: 3_600_000 });
  await m.start();
  assert.deepEqual([...nft.tables.keys()], ['ip6']);
  assert.equal(await m.ensure(), true);
  assert.equal(nft.calls.filter((c) => c === 'list table ip rudder').length, 1, 'looked at once, to remove it; never watched');
  assert.ok(log.lines.some((l) => l.includes('removed ip masquerade table left by an earlier run') && l.includes('ip rudder')));
  await m.stop();
  assert.equal(nft.tables.size, 0);

  // And the other way round: IPv6 turned off, the ip6 table goes.
  nft.tables.set('ip6', masqTable(dual, 'ip6'));
  const v4 = new IpMasq({ params, log, nft: nft.run, intervalMs: 3_600_000 });
  await v4.start();
  assert.deepEqual([...nft.tables.keys()], ['ip']);
  await v4.stop();
});

test('removeLeftoverTable removes an IPv6 table too', async () => {
  const nft = fakeNft();
  nft.tables.set('ip', masqTable(params));
  nft.tables.set('ip6', masqTable(dual, 'ip6'));
  const log = memoryLogger();
  await removeLeftoverTable(log, nft.run);
  assert.equal(nft.tables.size, 0);
  assert.equal(log.lines.filter((l) => l.includes('removed ip masquerade table left by an earlier run')).length, 2);
});
