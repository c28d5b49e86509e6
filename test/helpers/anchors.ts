/**
 * The anchors — real upstream programs (flanneld, kube-apiserver) that tests
 * run beside Rudder. Finding them lives here and nowhere else: they sit
 * packed in `../shared/anchors` beside the checkout (CI has them), or
 * `RUDDER_TEST_ANCHORS=DIR` points at a directory that already holds the
 * unpacked binaries. Packed anchors are unpacked once per run into a cache
 * directory (the unpack script checks the sha256 and skips what is already
 * there; flock keeps concurrent runs apart). Without either, tests that need
 * an anchor skip with one line that says what to set.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../../src/topology';

export const ANCHORS_ENV = 'RUDDER_TEST_ANCHORS';

function repoRoot(): string {
  // Compiled to dist/test/helpers/anchors.js: walk up to the checkout (package.json beside bin/).
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', '..');
}

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Where the anchors come from: an unpacked directory, or the packed anchors and their `unpack` script. */
type Source = { kind: 'dir'; dir: string } | { kind: 'packed'; unpack: string } | { kind: 'missing' };

function source(): Source {
  const dir = process.env[ANCHORS_ENV];
  if (dir !== undefined && dir !== '') return { kind: 'dir', dir: path.resolve(dir) };
  const unpack = path.resolve(repoRoot(), '..', 'shared', 'anchors', 'unpack');
  return fs.existsSync(unpack) ? { kind: 'packed', unpack } : { kind: 'missing' };
}

/** node:test `skip` reason when the anchors cannot be had (false = they can). */
export function skipUnlessAnchor(program: string): string | false {
  const s = source();
  if (s.kind === 'missing') {
    return `needs upstream ${program}: set ${ANCHORS_ENV}=DIR holding flanneld and kube-apiserver (or put the anchors at ../shared/anchors)`;
  }
  if (s.kind === 'packed' && !have('xz')) return 'needs xz to unpack ../shared/anchors (Debian xz-utils; ./build installs it)';
  return false;
}

let unpacked: Promise<string> | null = null;

/** The directory holding the unpacked anchors (unpacked once per run). */
function anchorsDir(): Promise<string> {
  unpacked ??= (async () => {
    const s = source();
    if (s.kind === 'missing') throw new Error(`no anchors: set ${ANCHORS_ENV}=DIR holding flanneld and kube-apiserver`);
    if (s.kind === 'dir') return s.dir;
    const cache = path.join(os.tmpdir(), `rudder-anchors-${process.getuid?.() ?? 'u'}`);
    fs.mkdirSync(cache, { recursive: true });
    const r = await run(['flock', path.join(cache, '.lock'), 'bash', s.unpack, cache]);
    return r.stdout.trim() || cache;
  })();
  return unpacked;
}

/** Path of one anchor binary (`flanneld`, `kube-apiserver`). */
export async function anchorBinary(name: string): Promise<string> {
  const dir = await anchorsDir();
  const bin = path.join(dir, name);
  if (!fs.existsSync(bin)) throw new Error(`no ${name} in ${dir} (${source().kind === 'dir' ? ANCHORS_ENV : '../shared/anchors/unpack'})`);
  return bin;
}
