/**
 * Pod helpers shared by the IPv6 end-to-end tests: a host's pod and its
 * IPv6 address (asserted present), a pod's address of a family, one pod
 * reaching another over a family, a file's sha256, and a TCP/IPv6 transfer
 * between two pods with socat.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Cluster, Host, Pod } from '../../src/topology';
import { waitUntil } from './wait';

export function podOf(h: Host): Pod {
  assert.ok(h.pod, `${h.name} has a pod`);
  return h.pod;
}

export function pod6(h: Host): string {
  const a = podOf(h).ipv6;
  assert.ok(a, `${h.name}'s pod has an IPv6 address`);
  return a;
}

export async function sha256(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Sends `src` from pod a to pod b over TCP/IPv6 on `port`; returns where it arrived. */
export async function tcp6(a: Host, b: Host, src: string, dir: string, port: number): Promise<string> {
  const dst = path.join(dir, `out-${port}`);
  const listener = await podOf(b).ns.spawn(['socat', '-u', `TCP6-LISTEN:${port},reuseaddr`, `OPEN:${dst},creat,trunc`], {
    logFile: path.join(dir, `socat-listen-${port}.log`),
    label: `socat listener in pod of ${b.name}`,
  });
  try {
    await podOf(a).exec(['socat', '-u', `FILE:${src}`, `TCP6:[${pod6(b)}]:${port},retry=200,interval=0.2`]);
    const ex = await listener.exited;
    assert.deepEqual(ex, { code: 0, signal: null }, `listener: ${listener.logTail()}`);
  } finally {
    await listener.stop(2_000);
  }
  return dst;
}

/** The pod's address of a family (the IPv6 one, or the IPv4 one). */
export function podIp(p: Pod, family: 4 | 6): string {
  const a = family === 6 ? p.ipv6 : p.ipv4;
  if (a === null) throw new Error(`pod ${p.ip} has no IPv${family} address`);
  return a;
}

/** Pod of `a` pings pod of `b` over `family` until one reply comes back (the cluster's give-up). */
export async function reaches(c: Cluster, a: Host, b: Host, family: 4 | 6): Promise<void> {
  const src = a.pod;
  const dst = b.pod;
  if (!src || !dst) throw new Error(`${a.name} → ${b.name}: pod missing`);
  const to = podIp(dst, family);
  await waitUntil(
    async () => {
      const r = await src.ping(to, { count: 1, replyWaitS: 1 });
      if (r.received < 1) throw new Error(`no reply: ${r.output.trim()}`);
      return true;
    },
    { giveUpMs: c.giveUpMs, intervalMs: 300, what: `IPv${family}: pod of ${a.name} reaching pod of ${b.name} (${to}); logs ${a.logFile}, ${b.logFile}` },
  );
}
