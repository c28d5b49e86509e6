/**
 * `node dist/bench/crypto.js`: the cost of sealing and opening one WireGuard
 * transport message (a 1,420-byte payload, the tunnel MTU's, and a 64-byte
 * one, an ACK's) on each of native/wireguard's two paths, side by side in one
 * run: EVP (bench/native/aead_bench.c linked to the system libcrypto.so) and
 * direct (libcrypto linked in and its symbols exported, as Node does, so
 * crypto.c calls ChaCha20_ctr32 and Poly1305_* below EVP). Needs gcc and
 * libssl-dev (./build installs them). Measurement only; nothing asserts.
 *   node dist/bench/crypto.js [--messages N] [--rounds R]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../src/topology/util';

const CORE = ['wireguard/crypto.c'];

function build(out: string, link: string[]): void {
  const native = path.join(repoRoot(), 'native');
  const r = spawnSync('gcc', ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', `-I${native}`, '-o', out, path.join(repoRoot(), 'bench', 'native', 'aead_bench.c'), ...CORE.map((c) => path.join(native, c)), ...link], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${path.basename(out)} failed:\n${r.stderr}`);
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name}: ${process.argv[i + 1]} is not a positive integer`);
  return v;
}

function main(): void {
  const messages = arg('--messages', 200_000);
  const rounds = arg('--rounds', 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rudder-aead-'));
  try {
    const bins = { evp: path.join(dir, 'evp'), direct: path.join(dir, 'direct') };
    build(bins.evp, ['-lcrypto']);
    build(bins.direct, ['-rdynamic', '-l:libcrypto.a', '-lpthread']);
    const best = new Map<string, number>();
    for (let r = 0; r < rounds; r++) {
      for (const [want, bin] of Object.entries(bins)) {
        const out = spawnSync(bin, [String(messages)], { encoding: 'utf8' });
        if (out.status !== 0) throw new Error(`${bin}: ${out.stdout}${out.stderr}`);
        for (const line of out.stdout.trim().split('\n')) {
          const m = /^(\w+) (\d+) seal (\d+) open (\d+)$/.exec(line);
          if (!m || m[1] !== want) throw new Error(`${bin}: unexpected output ${JSON.stringify(line)} (wanted the ${want} path)`);
          for (const [op, ns] of [['seal', m[3]], ['open', m[4]]] as const) {
            const key = `${want} ${m[2]} ${op}`;
            best.set(key, Math.min(best.get(key) ?? Infinity, Number(ns)));
          }
        }
      }
    }
    console.log(`ns per message, best of ${rounds} interleaved rounds of 5 × ${messages} (load ${os.loadavg()[0]?.toFixed(2)})`);
    console.log('| payload | op | EVP | direct | direct / EVP |\n| ---: | --- | ---: | ---: | ---: |');
    for (const size of ['1420', '64']) {
      for (const op of ['seal', 'open']) {
        const e = best.get(`evp ${size} ${op}`) ?? NaN;
        const d = best.get(`direct ${size} ${op}`) ?? NaN;
        console.log(`| ${size} B | ${op} | ${e} | ${d} | ${(d / e).toFixed(2)}× |`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
