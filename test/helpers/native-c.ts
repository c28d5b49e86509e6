/**
 * Building the native test programs (native/test, native/fuzz) with gcc for
 * the unit tests: where the sources are, whether gcc is there, whether it has
 * the sanitizer runtimes, and a compile that fails the test with gcc's output.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const NATIVE = path.resolve(__dirname, '..', '..', '..', 'native');
export const hasGcc = spawnSync('gcc', ['--version']).status === 0;

/** The pure packet code (checksums, segmentation, coalescing), relative to native/. */
export const OFFLOAD_SOURCES = ['offload/csum.c', 'offload/gso.c', 'offload/gro.c'] as const;

/**
 * gnu11 with -Wall -Wextra -Werror (as binding.gyp builds the addon) and
 * native/ on the include path, plus `flags`; `sources` relative to native/.
 */
export function compileC(out: string, sources: readonly string[], flags: readonly string[]): void {
  const args = ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-I', NATIVE, ...flags, '-o', out, ...sources.map((s) => path.join(NATIVE, s))];
  const r = spawnSync('gcc', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `gcc ${flags.join(' ')} failed:\n${r.stderr}`);
}

/** Whether gcc here links -fsanitize=address,undefined (some images lack the runtimes). */
export function hasSanitizers(dir: string): boolean {
  const probe = spawnSync('gcc', ['-fsanitize=address,undefined', '-x', 'c', '-o', path.join(dir, 'probe'), '-'], {
    input: 'int main(void){return 0;}',
    encoding: 'utf8',
  });
  return probe.status === 0;
}
