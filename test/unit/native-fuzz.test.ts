/**
 * Randomized property test of the data plane's packet validation
 * (native/fuzz/packet_fuzz.c, linked with native/dataplane/ip.c and routes.c
 * unchanged, drives their rx/tx validation with random, mutated and well-formed datagrams;
 * see the C file's header for every property checked). gcc only, no libFuzzer:
 *   - 200 000 cases under AddressSanitizer + UBSan (each datagram in a heap
 *     block of exactly its size, so any read past its end is caught);
 *   - 200 000 more from another seed built -O2 as the addon is;
 *   - the harness can fail: built with the header checks skipped, it must
 *     report failures.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileC, hasGcc, hasSanitizers } from '../helpers/native-c';

// The harness links the pieces it drives: the IPv4 and IPv6 checks, the route table, the counter names, checksums.
const SOURCES = ['fuzz/packet_fuzz.c', 'dataplane/ip.c', 'dataplane/ip6.c', 'dataplane/routes.c', 'dataplane/counters.c', 'offload/csum.c'];
const CASES = 200_000;
const compile = (out: string, flags: string[]): void => compileC(out, SOURCES, ['-pthread', ...flags]);

function runCases(bin: string, cases: number, seed: number): { status: number | null; out: string } {
  const r = spawnSync(bin, [String(cases), String(seed)], { encoding: 'utf8', maxBuffer: 4 << 20 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Checks the summary: the counts add up to the cases, and every outcome occurred. */
function checkSummary(out: string, cases: number, seed: number): void {
  assert.match(out, new RegExp(`^${cases} cases, seed ${seed}, \\d+ checks, 0 failures$`, 'm'), out);
  const rx = /^rx: delivered (\d+), unknown_sender (\d+), malformed (\d+), ttl (\d+), not_local (\d+)$/m.exec(out);
  const tx = /^tx: sent (\d+), not_ipv4 (\d+), malformed (\d+), no_route (\d+), ttl (\d+), icmp errors checked (\d+)$/m.exec(out);
  assert.ok(rx && tx, out);
  const rxN = rx.slice(1).map(Number);
  const txN = tx.slice(1, 6).map(Number);
  assert.equal(rxN.reduce((a, b) => a + b, 0), cases, `every rx case has one outcome: ${rx[0]}`);
  assert.equal(txN.reduce((a, b) => a + b, 0), cases, `every tx case has one outcome: ${tx[0]}`);
  for (const n of [...rxN, ...txN, Number(tx[6])]) assert.ok(n > 0, `every outcome is exercised: ${rx[0]} / ${tx[0]}`);
  const rx6 = /^rx6: delivered (\d+), unknown_sender (\d+), malformed (\d+), ttl (\d+), not_local (\d+)$/m.exec(out);
  const tx6 = /^tx6: sent (\d+), link_local (\d+), malformed (\d+), no_route (\d+), ttl (\d+), too_big (\d+), icmp6 errors checked (\d+)$/m.exec(out);
  assert.ok(rx6 && tx6, out);
  const rx6N = rx6.slice(1).map(Number);
  assert.equal(rx6N.reduce((a, b) => a + b, 0), cases, `every IPv6 rx case has one outcome: ${rx6[0]}`);
  for (const n of [...rx6N, ...tx6.slice(1).map(Number)]) assert.ok(n > 0, `every IPv6 outcome is exercised: ${rx6[0]} / ${tx6[0]}`);
}

describe('native/dataplane packet validation under random and hostile datagrams', { skip: !hasGcc && 'gcc not installed' }, () => {
  let dir = '';
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-pktfuzz-'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`${CASES} cases under AddressSanitizer and UBSan: no crash, no overread, accepted packets valid`, (t) => {
    if (!hasSanitizers(dir)) {
      t.skip('gcc has no sanitizer runtime here');
      return;
    }
    const bin = path.join(dir, 'packet_fuzz_asan');
    compile(bin, ['-O1', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer']);
    const r = runCases(bin, CASES, 1);
    assert.equal(r.status, 0, r.out);
    checkSummary(r.out, CASES, 1);
    t.diagnostic(r.out.trim().replace(/\n/g, ' | '));
  });

  it(`${CASES} cases built -O2 as the addon is (other seed)`, (t) => {
    const bin = path.join(dir, 'packet_fuzz');
    compile(bin, ['-O2']);
    const r = runCases(bin, CASES, 2);
    assert.equal(r.status, 0, r.out);
    checkSummary(r.out, CASES, 2);
    t.diagnostic(r.out.trim().replace(/\n/g, ' | '));
  });

  it('the harness can fail: with the header checks skipped it reports failures', () => {
    const bin = path.join(dir, 'packet_fuzz_broken');
    compile(bin, ['-O2', '-DFUZZ_SELFTEST_BROKEN_RX']);
    const r = runCases(bin, 2000, 3);
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /^2000 cases, seed 3, \d+ checks, [1-9]\d* failures$/m);
    assert.match(r.out, /rx accepted/);
  });
});
