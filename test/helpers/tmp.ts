/** Temporary directories that a test removes when it ends, pass or fail. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTempDir, removeDir } from '../../src/topology/util';

/** Something with node:test's `after` hook (a TestContext or the describe-level `after`). */
export interface AfterHook {
  after(fn: () => void | Promise<void>): void;
}

/** A fresh temp dir, removed after the test (kept when RUDDER_KEEP_TMP=1, for debugging). */
export function tempDir(t: AfterHook, prefix = 'rudder-test-'): string {
  const dir = makeTempDir(prefix);
  if (process.env.RUDDER_KEEP_TMP !== '1') t.after(() => removeDir(dir));
  return dir;
}

/** Writes `content` to `name` inside `dir` (mode as given) and returns the path. */
export function writeFile(dir: string, name: string, content: string, mode = 0o644): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, content, { mode });
  return p;
}
