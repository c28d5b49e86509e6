/**
 * The subnet file is replaced atomically (src/subnet/file.ts: temp file in the
 * same directory, fsync, rename): a reader on another thread that reads the
 * file in a tight loop while the daemon's writer rewrites it thousands of
 * times with alternating contents only ever sees one whole version or the
 * other, never an empty, partial or mixed file.
 *
 * Control: the same reader against a writer that rewrites the file in place
 * (truncate + write, what a naive implementation does) does see torn files,
 * so the reader is able to catch what it looks for.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { parseCidr } from '../../src/ip/ipv4';
import { formatSubnetFile, writeSubnetFile, type SubnetFileContents } from '../../src/subnet/file';
import { tempDir } from '../helpers/tmp';

const READER = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { file, versions, stop } = workerData;
const flag = new Int32Array(stop);
let reads = 0, missing = 0;
const seen = versions.map(() => 0);
const bad = [];
while (Atomics.load(flag, 0) === 0) {
  let text;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) { if (e.code === 'ENOENT') { missing++; continue; } throw e; }
  reads++;
  const i = versions.indexOf(text);
  if (i >= 0) seen[i]++;
  else if (bad.length < 5) bad.push(text);
  else bad.length++;
}
parentPort.postMessage({ reads, missing, seen, bad: bad.slice(0, 5), badCount: bad.length });
`;

interface ReaderResult {
  reads: number;
  missing: number;
  seen: number[];
  bad: string[];
  badCount: number;
}

function contents(net: string, subnet: string, mtu: number, ipMasq: boolean): SubnetFileContents {
  const n = parseCidr(net);
  const s = parseCidr(subnet);
  assert.ok(n && s);
  return { network: n, subnet: s, mtu, ipMasq };
}

/** Runs `writes` rewrites with `write(i)` while a reader thread loops; returns what it saw. */
async function race(file: string, versions: string[], writes: number, write: (i: number) => Promise<void> | void): Promise<ReaderResult> {
  const stop = new SharedArrayBuffer(4);
  const worker = new Worker(READER, { eval: true, workerData: { file, versions, stop } });
  const result = new Promise<ReaderResult>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // Let the reader start spinning before the writes begin.
  await new Promise<void>((r) => worker.once('online', () => r()));
  try {
    for (let i = 0; i < writes; i++) await write(i);
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
  }
  const r = await result;
  await worker.terminate();
  return r;
}

describe('subnet file: atomic replacement under a concurrent reader', () => {
  // Two versions of different lengths, so a mix or a cut shows.
  const a = contents('10.0.0.0/16', '10.0.5.0/24', 1472, false);
  const b = contents('172.16.0.0/12', '172.31.250.0/26', 8950, true);
  const versions = [formatSubnetFile(a), formatSubnetFile(b)];
  const WRITES = 4000;

  it(`${WRITES} rewrites with alternating contents: the reader sees only whole versions`, async (t) => {
    const dir = tempDir(t, 'rudder-subnetfile-');
    const file = path.join(dir, 'subnet.env');
    await writeSubnetFile(file, a);
    const r = await race(file, versions, WRITES, (i) => writeSubnetFile(file, i % 2 ? a : b));
    t.diagnostic(JSON.stringify({ writes: WRITES, ...r }));
    assert.equal(r.badCount, 0, `torn reads: ${JSON.stringify(r.bad)}`);
    assert.equal(r.missing, 0, 'the file never disappeared');
    assert.ok(r.seen[0]! > 0 && r.seen[1]! > 0, `both versions were read: ${JSON.stringify(r.seen)}`);
    assert.ok(r.reads >= 1000, `the reader raced the writer (${r.reads} reads)`);
    assert.equal(fs.readFileSync(file, 'utf8'), versions[(WRITES - 1) % 2 ? 0 : 1]);
    assert.deepEqual(fs.readdirSync(dir), ['subnet.env'], 'no temp files left behind');
  });

  it('control: an in-place rewrite is caught by the same reader', async (t) => {
    const dir = tempDir(t, 'rudder-subnetfile-');
    const file = path.join(dir, 'subnet.env');
    fs.writeFileSync(file, versions[0]!);
    // Small writes so the window between truncate and write is wide enough to be seen.
    const r = await race(file, versions, 20_000, (i) => {
      const text = versions[i % 2]!;
      const fd = fs.openSync(file, 'w');
      try {
        for (let k = 0; k < text.length; k += 16) fs.writeSync(fd, text.slice(k, k + 16));
      } finally {
        fs.closeSync(fd);
      }
    });
    t.diagnostic(JSON.stringify({ writes: 20_000, reads: r.reads, torn: r.badCount, example: r.bad[0] }));
    assert.ok(r.badCount > 0, `the reader saw no torn file in ${r.reads} reads of an in-place writer`);
  });
});
