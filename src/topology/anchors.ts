/**
 * Finding the project's anchors: the real upstream programs (flanneld
 * v0.20.2, kube-apiserver) that tests and benchmarks run Rudder beside.
 * They sit packed in `../shared/anchors` beside the checkout (CI has them);
 * `RUDDER_TEST_ANCHORS=DIR` points at a directory that already holds them
 * unpacked instead. This is the one place that knows where they are; the
 * e2e tests (test/helpers/) and `npm run bench` use it.
 *
 * Unpacking runs the anchors' own `unpack` script once per process into a
 * cache directory under the system's temp dir (it checks the sha256 and
 * skips what is there; flock keeps two concurrent runs apart).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from './exec';
import { repoRoot } from './util';

export const ANCHORS_ENV = 'RUDDER_TEST_ANCHORS';


export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Where the anchors come from: an unpacked directory, or the packed anchors and their `unpack` script. */
export type AnchorSource = { kind: 'dir'; dir: string } | { kind: 'packed'; unpack: string } | { kind: 'missing' };

export function anchorSource(env: NodeJS.ProcessEnv = process.env, root: string = repoRoot()): AnchorSource {
  const dir = env[ANCHORS_ENV];
  if (dir !== undefined && dir !== '') return { kind: 'dir', dir: path.resolve(dir) };
  const unpack = path.resolve(root, '..', 'shared', 'anchors', 'unpack');
  return fs.existsSync(unpack) ? { kind: 'packed', unpack } : { kind: 'missing' };
}

/** The one line that says what to set when the anchors are not there. */
export const ANCHORS_MISSING = `set ${ANCHORS_ENV}=DIR holding flanneld and kube-apiserver (or put the anchors at ../shared/anchors)`;

/** Why the anchors cannot be had here (missing, or no xz to unpack them), or false. */
export function anchorsUnavailable(): string | false {
  const s = anchorSource();
  if (s.kind === 'missing') return `anchors not found: ${ANCHORS_MISSING}`;
  if (s.kind === 'packed' && !have('xz')) return 'needs xz to unpack ../shared/anchors (Debian xz-utils; ./build installs it)';
  return false;
}

/** Why flanneld cannot run here (no anchors, no iptables for flanneld), or false when it can. */
export function flanneldUnavailable(): string | false {
  const why = anchorsUnavailable();
  if (why !== false) return why;
  if (!have('iptables')) return 'needs iptables for flanneld (Debian iptables; ./build installs it)';
  return false;
}

let unpacked: Promise<string> | null = null;

/** The directory holding the unpacked anchors, unpacked once per process. */
function anchorsDir(): Promise<string> {
  unpacked ??= (async () => {
    const s = anchorSource();
    if (s.kind === 'missing') throw new Error(`anchors not found: ${ANCHORS_MISSING}`);
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
  if (!fs.existsSync(bin)) throw new Error(`no ${name} in ${dir} (from ${anchorSource().kind === 'dir' ? ANCHORS_ENV : '../shared/anchors/unpack'})`);
  return bin;
}

/** Path of the flanneld binary. */
export function flanneldBinary(): Promise<string> {
  return anchorBinary('flanneld');
}
