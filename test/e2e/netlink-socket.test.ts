/**
 * The addon's rtnetlink socket (src/netlink/socket.ts) against a real
 * kernel, in a namespace made for this run: a subscriber gets the
 * notifications of the namespace's link changes on node's event loop, and a
 * burst it cannot read in time (its loop blocked, a small receive buffer)
 * is reported as lost (ENOBUFS), after which notifications flow again.
 * The subscriber runs inside the namespace (`ip netns exec`), as the facade
 * child does; it prints one JSON line per event.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createTestNs, type TestNs } from '../helpers/netlink-ns';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : false;

// The subscriber: RTNLGRP_LINK (1), a 4 KB receive buffer; "block N" on stdin busy-waits N ms.
const CHILD = `
const { RtnlSocket } = require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'netlink', 'socket.js'))});
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const s = new RtnlSocket({ groups: [1], rcvbuf: 4096, onDatagram: (d) => out({ type: d.readUInt16LE(4), index: d.readInt32LE(20) }), onLost: (reason) => out({ lost: reason }) });
s.ref(true);
require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
  const m = /^block (\\d+)$/.exec(l);
  if (m) { const end = Date.now() + Number(m[1]); while (Date.now() < end); out({ unblocked: true }); }
});
process.stdin.on('end', () => { s.close(); process.exit(0); });
out({ ready: true });
`;

type Event = { ready?: true; unblocked?: true; lost?: string; type?: number; index?: number };

describe('rtnetlink socket (in a network namespace)', { skip }, () => {
  let ns: TestNs;
  let child: ChildProcess;
  const events: Event[] = [];
  const waiters: Array<() => void> = [];
  const waitFor = async (what: string, pred: (e: Event) => boolean, ms = 10_000): Promise<Event> => {
    const end = Date.now() + ms;
    for (;;) {
      const hit = events.find(pred);
      if (hit) return hit;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(events.slice(-5))}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };

  before(async () => {
    ns = createTestNs('rns');
    child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', CHILD], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
      events.push(JSON.parse(l) as Event);
      for (const w of waiters.splice(0)) w();
    });
    await waitFor('the subscriber', (e) => e.ready === true);
  });

  after(() => {
    child?.stdin?.end();
    if (child?.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
    ns?.destroy();
  });

  it('delivers the notification of a new link', async () => {
    ns.ip('link', 'add', 'nsd0', 'type', 'veth', 'peer', 'name', 'nsp0');
    const index = ns.ipJson<Array<{ ifindex: number }>>('link', 'show', 'dev', 'nsd0')[0]?.ifindex;
    const e = await waitFor('RTM_NEWLINK of nsd0', (x) => x.type === 16 && x.index === index);
    assert.equal(e.index, index);
  });

  it('reports a burst it could not read as lost (ENOBUFS), then goes on', async () => {
    child.stdin?.write('block 1500\n');
    const batch = Array.from({ length: 100 }, (_, i) => `link add nsb${i} type veth peer name nsc${i}`).join('\n');
    const ip = spawn('ip', ['-n', ns.name, '-batch', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
    ip.stdin.end(batch + '\n');
    await new Promise((r) => ip.on('exit', r));
    await waitFor('the subscriber to run again', (e) => e.unblocked === true);
    const lost = await waitFor('a lost report', (e) => e.lost !== undefined);
    assert.match(lost.lost ?? '', /ENOBUFS/);
    const n = events.length;
    ns.ip('link', 'add', 'nsd1', 'type', 'veth', 'peer', 'name', 'nsp1');
    const index = ns.ipJson<Array<{ ifindex: number }>>('link', 'show', 'dev', 'nsd1')[0]?.ifindex;
    await waitFor('RTM_NEWLINK of nsd1 after the loss', (x) => events.indexOf(x) >= n && x.type === 16 && x.index === index);
  });
});
