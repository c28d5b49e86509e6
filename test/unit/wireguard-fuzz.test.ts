/**
 * Fuzzing of every WireGuard message parser of native/wireguard (initiation,
 * response, cookie reply, transport, receiver index): compiles
 * native/wireguard/test/parser_fuzz.c and runs a fixed number of seeded
 * random-mutation cases, once -O2 and once under AddressSanitizer/UBSan
 * (every input in a heap block of exactly its length). The program checks
 * that nothing but the genuine message (or changes only to fields the
 * protocol leaves unauthenticated: mac2 off load, a cookie reply's receiver
 * index) is ever accepted, and that refused input disturbs neither a
 * handshake in progress nor the replay window; see its header.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SANITIZE, compileWg, hasGcc, hasLibcrypto, hasSanitizers } from '../helpers/wireguard-c';

function runCases(bin: string, cases: number, seed: number): void {
  const r = spawnSync(bin, [String(cases), String(seed)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  assert.equal(r.status, 0, `${path.basename(bin)} ${cases} ${seed}:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, new RegExp(`^${cases} cases, seed ${seed}, [1-9]\\d* checks, 0 failures`, 'm'));
}

const skip = !hasGcc ? 'gcc not installed' : !hasLibcrypto ? 'OpenSSL headers not installed (libssl-dev)' : false;

describe('native/wireguard: message parsers under random mutation', { skip }, () => {
  let dir = '';
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-wgfuzz-'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('10 000 cases, built -O2', () => {
    const bin = path.join(dir, 'parser_fuzz');
    compileWg(bin, 'parser_fuzz.c', ['-O2']);
    runCases(bin, 10000, 1);
  });

  it('3 000 more cases under AddressSanitizer and UBSan (other seed)', (t) => {
    if (!hasSanitizers(dir)) {
      t.skip('gcc has no sanitizer runtime here');
      return;
    }
    const bin = path.join(dir, 'parser_fuzz_asan');
    compileWg(bin, 'parser_fuzz.c', SANITIZE);
    runCases(bin, 3000, 2);
  });
});
