/**
 * Loaded into a daemon with `NODE_OPTIONS=--require dist/bench/memdump.js`
 * by bench/memory.ts: on SIGUSR2 it writes, as JSON, to the file named by
 * BENCH_MEMDUMP_FILE, what the process holds: process.memoryUsage(), V8's
 * heap spaces and code statistics, /proc/self/status's RSS split (anon,
 * file, shmem), and every module in require.cache — once as found, then
 * again after a full gc() when node runs with --expose-gc (bin/rudder does).
 * It imports only node builtins, so it adds no module of its own to the
 * list it reports. A measurement aid; nothing in src/ knows of it.
 */
import * as fs from 'node:fs';
import * as v8 from 'node:v8';

const file = process.env.BENCH_MEMDUMP_FILE;

function status(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const m of fs.readFileSync('/proc/self/status', 'utf8').matchAll(/^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM):\s+(\d+) kB/gm)) out[m[1] as string] = Number(m[2]) * 1024;
  } catch {
    // not Linux: left out
  }
  return out;
}

function snapshot(): object {
  return {
    memoryUsage: process.memoryUsage(),
    status: status(),
    heapSpaces: v8.getHeapSpaceStatistics().map((s) => ({ name: s.space_name, size: s.space_size, used: s.space_used_size, physical: s.physical_space_size })),
    heapCode: v8.getHeapCodeStatistics(),
  };
}

if (file) {
  process.on('SIGUSR2', () => {
    const before = snapshot();
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) gc();
    const after = gc ? snapshot() : null;
    const modules = Object.keys(require.cache).filter((m) => m !== __filename);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify({ pid: process.pid, execArgv: process.execArgv, before, afterGc: after, modules }) + '\n');
    fs.renameSync(`${file}.tmp`, file);
  });
}
