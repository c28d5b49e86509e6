/**
 * Property tests of the data plane's pure packet code (native/offload/):
 * compiles native/test/gso_test.c with gcc and runs it on a fixed number of
 * random cases from fixed seeds — once optimised as shipped (-O2, warnings
 * are errors) and once under AddressSanitizer/UBSan. The C program checks
 * segmentation (checksums, IP IDs, seq, CWR/PSH/FIN), segment → coalesce
 * identity and coalescing of random mixes; see its header.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileC, hasGcc, hasSanitizers, OFFLOAD_SOURCES } from '../helpers/native-c';

const SOURCES = ['test/gso_test.c', ...OFFLOAD_SOURCES];
const compile = (out: string, flags: string[]): void => compileC(out, SOURCES, flags);

function runCases(bin: string, cases: number, seed: number): string {
  const r = spawnSync(bin, [String(cases), String(seed)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  assert.equal(r.status, 0, `${path.basename(bin)} ${cases} ${seed}:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, new RegExp(`${cases} cases, seed ${seed}, \\d+ checks, 0 failures`));
  return r.stdout;
}

describe('native/offload: segmentation and coalescing properties', { skip: !hasGcc && 'gcc not installed' }, () => {
  let dir = '';
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-gso-'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('10 000 random cases, built -O2 as the addon is', () => {
    const bin = path.join(dir, 'gso_test');
    compile(bin, ['-O2']);
    runCases(bin, 10000, 1);
  });

  it('2 000 more cases under AddressSanitizer and UBSan (other seed)', (t) => {
    const bin = path.join(dir, 'gso_test_asan');
    if (!hasSanitizers(dir)) {
      t.skip('gcc has no sanitizer runtime here');
      return;
    }
    compile(bin, ['-O1', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all']);
    runCases(bin, 2000, 2);
  });

  it('the checks can fail: a wrong seed count is reported, not passed', () => {
    // Guards the harness itself: the program must report its case count and seed as given.
    const bin = path.join(dir, 'gso_test');
    const r = spawnSync(bin, ['3', '99'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.match(r.stdout, /3 cases, seed 99, [1-9]\d* checks, 0 failures/);
  });
});
