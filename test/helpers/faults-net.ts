/**
 * What the e2e fault tests measure traffic with: a long-running `ping -D`
 * (every reply stamped with the wall clock) in a pod namespace, started in
 * the background while a fault happens, and read when it ends.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Pod } from '../../src/topology';

export interface PingRun {
  target: string;
  transmitted: number;
  received: number;
  /** Sequence numbers sent but never answered. */
  lost: number[];
  /** Reply wall-clock times (ms since the epoch) by sequence number. */
  replies: Array<{ seq: number; at: number }>;
  /** "From ... Destination Net Unreachable" and the like. */
  errors: string[];
  output: string;
}

export interface BackgroundPing {
  /** Resolves when ping ends (after `count` packets), with what it saw. */
  done: Promise<PingRun>;
}

/** Starts `ping -D -n -i <intervalS> -c <count> -W 1 target` inside the pod's namespace. */
export async function startPing(pod: Pod, target: string, opts: { intervalS: number; count: number; dir: string; label: string }): Promise<BackgroundPing> {
  const logFile = path.join(opts.dir, `ping-${opts.label}-${Date.now()}.log`);
  const proc = await pod.ns.spawn(['ping', '-D', '-n', '-i', String(opts.intervalS), '-c', String(opts.count), '-W', '1', target], { logFile, label: `ping ${opts.label}` });
  const done = proc.exited.then(() => parsePingD(target, fs.readFileSync(logFile, 'utf8')));
  return { done };
}

export function parsePingD(target: string, out: string): PingRun {
  const replies: Array<{ seq: number; at: number }> = [];
  const errors: string[] = [];
  let transmitted = -1;
  let received = 0;
  for (const line of out.split('\n')) {
    const r = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/.exec(line);
    if (r) {
      replies.push({ seq: Number(r[2]), at: Number(r[1]) * 1000 });
      continue;
    }
    if (/From \S+.*icmp_seq=/.test(line)) errors.push(line.trim());
    const s = /(\d+) packets transmitted, (\d+) received/.exec(line);
    if (s) {
      transmitted = Number(s[1]);
      received = Number(s[2]);
    }
  }
  if (transmitted < 0) throw new Error(`ping ${target} gave no summary:\n${out.slice(-2000)}`);
  const got = new Set(replies.map((r) => r.seq));
  const lost: number[] = [];
  for (let s = 1; s <= transmitted; s++) if (!got.has(s)) lost.push(s);
  return { target, transmitted, received, lost, replies, errors, output: out };
}

/** Longest time between two consecutive replies (ms), and when it started. */
export function longestGap(run: PingRun): { ms: number; from: number; to: number } {
  const at = run.replies.map((r) => r.at).sort((a, b) => a - b);
  let best = { ms: 0, from: at[0] ?? 0, to: at[0] ?? 0 };
  for (let i = 1; i < at.length; i++) {
    const d = (at[i] as number) - (at[i - 1] as number);
    if (d > best.ms) best = { ms: d, from: at[i - 1] as number, to: at[i] as number };
  }
  return best;
}

/** First reply at or after `t` (ms epoch), or null. */
export function firstReplyAfter(run: PingRun, t: number): number | null {
  const at = run.replies.map((r) => r.at).filter((x) => x >= t).sort((a, b) => a - b);
  return at[0] ?? null;
}

export function summary(run: PingRun): string {
  return `${run.received}/${run.transmitted} replies, lost seq ${run.lost.length ? run.lost.slice(0, 30).join(',') : 'none'}${run.errors.length ? `; ${run.errors.length} ICMP errors, e.g. ${run.errors[0]}` : ''}`;
}
